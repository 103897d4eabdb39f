"""Regression head."""

import keras
import numpy as np

from finetunekit.core.pooled import PooledHead
from finetunekit.core.scores import regression_section


@keras.saving.register_keras_serializable(package="finetunekit")
class RegressionHead(PooledHead):
    """Regression head: a linear float32 output of `units` values.

    Args:
        units: int. Number of targets per example. Defaults to `1`.
        pooling: str. How backbone features are pooled. Defaults to `"avg"`.
        hidden_units: tuple of ints. Hidden dense layers. Defaults to `()`.
        dropout: float. Dropout rate before each dense layer. Defaults to `0.0`.
        activation: str. Activation of the hidden layers. Defaults to `"relu"`.
        kernel_regularizer: a Keras regularizer on the kernels of the head's
            dense layers, or `l1=` / `l2=` floats as a shortcut. Saved with the
            model. Defaults to none.
        **kwargs: Standard `keras.layers.Layer` arguments.

    Returns:
        Predictions of shape `(batch, units)`, float32.

    Example:
    ```python
    ft = fk.FineTuner(backbone="efficientnetb0", head=fk.RegressionHead(units=1))
    ```
    """

    def __init__(self, units=1, pooling="avg", hidden_units=(), dropout=0.0, activation="relu", **kwargs):
        if int(units) < 1:
            raise ValueError(f"`units` must be >= 1. Received: units={units}")
        super().__init__(
            units=units,
            output_activation=None,
            pooling=pooling,
            hidden_units=hidden_units,
            dropout=dropout,
            activation=activation,
            **kwargs,
        )

    def default_loss(self, label_smoothing=0.0):
        if label_smoothing:
            raise ValueError(
                "`label_smoothing` applies to classification heads only. "
                f"Received head: {type(self).__name__}"
            )
        return keras.losses.MeanSquaredError()

    def default_metrics(self):
        return [keras.metrics.MeanAbsoluteError(name="mae")]

    def encode_targets(self, y, class_names=None):
        """Checks numeric targets: returns a float32 `(n, units)` array and `None`."""
        if hasattr(y, "to_numpy"):
            y = y.to_numpy()
        y = np.asarray(y)
        if y.dtype.kind not in "iufb":
            raise ValueError(
                "A RegressionHead needs numeric targets, but the labels have dtype "
                f"{y.dtype} (e.g. {y.reshape(-1)[:3].tolist()}). For class labels use "
                "fk.ClassificationHead(num_classes=...)."
            )
        y = y.astype("float32")
        if y.ndim == 1:
            y = y[:, None]
        if y.ndim != 2 or y.shape[1] != self.units:
            raise ValueError(
                f"A RegressionHead with units={self.units} expects targets of shape "
                f"(n,) or (n, {self.units}). Received targets of shape {y.shape}."
            )
        if not np.all(np.isfinite(y)):
            raise ValueError("Regression targets contain NaN or inf values; drop or fill them.")
        return y, None

    def report(self, outputs, targets, class_names=None):
        """MAE, RMSE and R2, overall and per output."""
        return regression_section(outputs, targets)

    def get_config(self):
        config = super().get_config()
        config["units"] = self.units
        return config
