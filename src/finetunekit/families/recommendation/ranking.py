"""Ranking head: the rating (or click probability) of a (user, item) pair."""

import keras
import numpy as np
from keras import ops

from finetunekit.core.head import Head, as_outputs
from finetunekit.core.reports import Report
from finetunekit.core.scores import regression_section
from finetunekit.families.recommendation.retrieval import import_keras_rs

TASKS = ("rating", "click")


@keras.saving.register_keras_serializable(package="finetunekit")
class RankingHead(Head):
    """Scores (user, item) pairs: a rating (regression) or a click probability.

    Needs an `fk.backbones.Embeddings` backbone. The user and item vectors,
    their dot product (`keras_rs.layers.DotInteraction`) and hidden dense
    layers give one float32 output per pair. Targets come from the rating
    (or label / click) column of the interactions, or `y=`.

    Args:
        task: `"rating"` (mean squared error, RMSE) or `"click"` (0/1
            targets, binary cross-entropy, AUC). Defaults to `"rating"`.
        hidden_units: tuple of ints. Hidden dense layers. Defaults to `(32,)`.
        **kwargs: Standard `keras.layers.Layer` arguments.

    Returns:
        `(batch, 1)` float32 ratings or click probabilities.

    Example:
    ```python
    ranker = fk.FineTuner(backbone=fk.backbones.Embeddings(users=users, items=items, dim=32),
                          head=fk.RankingHead(), unfreeze="all")
    ranker.fit(ratings, epochs=5)                     # user, item, rating columns
    ranker.evaluate(test_ratings, report=True)        # RMSE, MAE
    ```
    """

    def __init__(self, task="rating", hidden_units=(32,), **kwargs):
        super().__init__(**kwargs)
        if task not in TASKS:
            raise ValueError(f"`task` must be one of {TASKS}. Received: task={task!r}")
        self.task = task
        self.hidden_units = tuple(int(u) for u in hidden_units)
        self.interaction = import_keras_rs().layers.DotInteraction(dtype="float32")
        self.hidden = [keras.layers.Dense(u, activation="relu", dtype="float32")
                       for u in self.hidden_units]
        self.out = keras.layers.Dense(
            1, activation="sigmoid" if task == "click" else None, dtype="float32"
        )

    def adapt_backbone(self, kind):
        """Refuses a backbone without user and item vectors (anything but `fk.backbones.Embeddings`)."""
        if kind.modality != "ids":
            raise ValueError(
                f"RankingHead scores (user, item) pairs from their vectors, which a {kind.modality} "
                f"backbone ({kind.name}) does not provide. Use "
                "fk.backbones.Embeddings(users=..., items=...)."
            )
        return kind

    def build(self, input_shape):
        dim = input_shape["features"][-1]
        self.interaction.build([(None, dim), (None, dim)])
        width = 2 * dim + 1
        for layer in self.hidden:
            layer.build((None, width))
            width = layer.units
        self.out.build((None, width))

    def call(self, outputs, training=None):
        features = ops.cast(as_outputs(outputs)["features"], "float32")
        user, item = features[:, 0], features[:, 1]
        x = ops.concatenate([user, item, self.interaction([user, item])], axis=-1)
        for layer in self.hidden:
            x = layer(x)
        return self.out(x)

    def compute_output_shape(self, input_shape):
        return (input_shape["features"][0], 1)

    def default_loss(self, label_smoothing=0.0):
        if self.task == "click":
            return keras.losses.BinaryCrossentropy(label_smoothing=label_smoothing)
        if label_smoothing:
            raise ValueError('`label_smoothing` applies to RankingHead(task="click") only.')
        return keras.losses.MeanSquaredError()

    def default_metrics(self):
        if self.task == "click":
            return [keras.metrics.AUC(name="auc")]
        return [keras.metrics.RootMeanSquaredError(name="rmse")]

    def encode_targets(self, y, class_names=None):
        """Checks numeric ratings (or 0/1 clicks); returns a float32 `(n, 1)` array."""
        values = np.asarray(y.to_numpy() if hasattr(y, "to_numpy") else y)
        if values.dtype.kind not in "iufb" or (values.ndim == 2 and values.shape[1] != 1):
            raise ValueError(
                "A RankingHead needs one numeric rating (or 0/1 click) per interaction. "
                f"Received dtype {values.dtype}, shape {values.shape}."
            )
        values = values.reshape(-1, 1).astype("float32")
        if not np.all(np.isfinite(values)):
            raise ValueError("Ratings contain NaN or inf values.")
        if self.task == "click" and not np.isin(values, (0.0, 1.0)).all():
            raise ValueError('RankingHead(task="click") needs 0/1 targets; use task="rating".')
        return values, class_names

    def decode(self, outputs, class_names=None, context=None):
        return np.asarray(outputs).reshape(-1).tolist()

    def report(self, outputs, targets, class_names=None):
        if self.task == "rating":
            return regression_section(np.asarray(outputs), np.asarray(targets))
        from sklearn.metrics import log_loss, roc_auc_score

        y_true = np.asarray(targets).reshape(-1)
        y_pred = np.asarray(outputs).reshape(-1)
        both = len(np.unique(y_true)) == 2
        metrics = {
            "auc": float(roc_auc_score(y_true, y_pred)) if both else float("nan"),
            "accuracy": float(np.mean((y_pred > 0.5) == (y_true > 0.5))),
            "log_loss": float(log_loss(y_true, np.clip(y_pred, 1e-7, 1 - 1e-7), labels=[0, 1])),
        }
        return Report("click", metrics, {}, None, [], len(y_true))

    def get_config(self):
        return {**super().get_config(), "task": self.task, "hidden_units": list(self.hidden_units)}
