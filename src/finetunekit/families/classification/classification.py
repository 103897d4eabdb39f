"""Single-label and multi-label classification head."""

import keras
import numpy as np

from finetunekit.core.pooled import PooledHead
from finetunekit.core.scores import classification_section, multi_label_section
from finetunekit.training.losses import SparseCategoricalCrossentropyWithSmoothing


@keras.saving.register_keras_serializable(package="finetunekit")
class ClassificationHead(PooledHead):
    """Classification head: softmax over classes, or per-class sigmoids.

    Args:
        num_classes: int. Number of classes (>= 2 for single-label).
        pooling: str. How backbone features are pooled: `"avg"`, `"max"`,
            `"flatten"` for images; `"cls"`, `"mean"`, `"max"` for sequences.
            Defaults to `"avg"`.
        hidden_units: tuple of ints. Hidden dense layers before the output.
            Defaults to `()`.
        dropout: float. Dropout rate before each dense layer. Defaults to `0.0`.
        activation: str. Activation of the hidden layers. Defaults to `"relu"`.
        kernel_regularizer: a Keras regularizer on the kernels of the head's
            dense layers, or `l1=` / `l2=` floats as a shortcut. Saved with the
            model. Defaults to none.
        multi_label: bool. If `True`, each class is an independent yes/no
            (sigmoid outputs, binary cross-entropy). Defaults to `False`.
        threshold: float or list of floats. Per-class decision threshold of a
            multi-label head, used by `predict_labels`. Defaults to `0.5`.
        **kwargs: Standard `keras.layers.Layer` arguments.

    Returns:
        Probabilities of shape `(batch, num_classes)`, float32.

    Example:
    ```python
    head = fk.ClassificationHead(num_classes=3, hidden_units=(256,), dropout=0.2)
    ft = fk.FineTuner(backbone="resnet50", head=head)
    ```
    """

    def __init__(
        self,
        num_classes,
        pooling="avg",
        hidden_units=(),
        dropout=0.0,
        activation="relu",
        multi_label=False,
        threshold=0.5,
        **kwargs,
    ):
        if isinstance(num_classes, bool) or not float(num_classes).is_integer():
            raise ValueError(
                f"`num_classes` must be a whole number. Received: num_classes={num_classes!r}"
            )
        num_classes = int(num_classes)
        if num_classes < 1 or (num_classes < 2 and not multi_label):
            raise ValueError(
                "`num_classes` must be >= 2 for single-label classification (use "
                "multi_label=True for one yes/no output). "
                f"Received: num_classes={num_classes}"
            )
        self.num_classes = num_classes
        self.multi_label = bool(multi_label)
        if isinstance(threshold, (list, tuple, np.ndarray)):
            threshold = [float(t) for t in threshold]
            if len(threshold) != num_classes:
                raise ValueError(
                    f"`threshold` needs one value per class ({num_classes}). "
                    f"Received {len(threshold)} values."
                )
        else:
            threshold = float(threshold)
        self.threshold = threshold
        super().__init__(
            units=num_classes,
            output_activation="sigmoid" if self.multi_label else "softmax",
            pooling=pooling,
            hidden_units=hidden_units,
            dropout=dropout,
            activation=activation,
            **kwargs,
        )

    def default_loss(self, label_smoothing=0.0):
        if self.multi_label:
            return keras.losses.BinaryCrossentropy(label_smoothing=float(label_smoothing))
        if label_smoothing:
            return SparseCategoricalCrossentropyWithSmoothing(label_smoothing=label_smoothing)
        return keras.losses.SparseCategoricalCrossentropy()

    def check_loss(self, loss):
        """Refuses regression losses (`"mse"`, `keras.losses.MeanAbsoluteError()`, ...).

        Args:
            loss: the `compile(loss=...)` value.

        Returns:
            `loss`, when it can train class probabilities.

        Raises:
            ValueError: a regression loss, naming this head's default loss.
        """
        names = {_loss_name(loss), _loss_name(type(loss))} - {None}
        if names & REGRESSION_LOSSES:
            default = type(self.default_loss()).__name__
            shown = repr(loss) if isinstance(loss, str) else getattr(
                loss, "__name__", f"{type(loss).__name__}()"
            )
            raise ValueError(
                f"loss={shown} is a regression loss, but a ClassificationHead outputs class "
                f"probabilities ({'sigmoid' if self.multi_label else 'softmax'}) trained "
                f"against class labels. Use loss=\"auto\" (this head's default, "
                f"keras.losses.{default}), or fk.RegressionHead() for continuous targets."
            )
        return loss

    def default_metrics(self):
        if self.multi_label:
            return [keras.metrics.BinaryAccuracy(name="binary_accuracy")]
        return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]

    def encode_targets(self, y, class_names=None):
        """Encodes labels as class indices (or a multi-hot matrix).

        Args:
            y: array-like. Integer class ids or class-name strings (one per
                example); for a multi-label head, a multi-hot matrix or a list
                of label lists.
            class_names: list of str or None. Known class names.

        Returns:
            `(encoded, class_names)`: an int32 vector (or float32 multi-hot
            matrix) and the class names (learned from string labels).

        Raises:
            ValueError: labels out of range, more classes than `num_classes`,
                or targets that do not fit a classification head.
        """
        if self.multi_label:
            return self._prepare_multi_label(y, class_names)
        y = _as_array(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise ValueError(
                "A single-label ClassificationHead expects one label per example "
                f"(shape (n,)); received labels of shape {y.shape}. For one-hot or "
                "multi-hot targets use ClassificationHead(..., multi_label=True) or "
                "pass class indices (np.argmax(y, axis=1))."
            )
        if class_names is not None and len(class_names) != self.num_classes:
            raise ValueError(
                f"The data has {len(class_names)} classes ({_preview(class_names)}) but the "
                f"head has num_classes={self.num_classes}. Set num_classes={len(class_names)}."
            )
        if y.dtype.kind in "USO":
            return self._encode_names([_to_str(v) for v in y], class_names)
        if y.dtype.kind == "f":
            if not np.all(np.isfinite(y)):
                raise ValueError("Labels contain NaN or inf values.")
            if not np.all(np.equal(np.mod(y, 1), 0)):
                raise ValueError(
                    "A ClassificationHead expects integer class ids or class names, but the "
                    "labels are non-integer floats. For continuous targets use "
                    "fk.RegressionHead()."
                )
        if y.dtype.kind not in "iuf" and y.dtype != bool:
            raise ValueError(f"Cannot use labels of dtype {y.dtype} with a ClassificationHead.")
        y = y.astype("int64")
        if y.size:
            low, high = int(y.min()), int(y.max())
            if low < 0 or high >= self.num_classes:
                raise ValueError(
                    f"Labels out of range: found values from {low} to {high}, but "
                    f"num_classes={self.num_classes} accepts 0..{self.num_classes - 1}. "
                    f"Set num_classes={max(high + 1, self.num_classes)} or fix the labels."
                )
        return y.astype("int32"), class_names

    def _encode_names(self, labels, class_names):
        """Class-name labels -> class ids (class names learned when not known)."""
        if class_names is None and len(set(labels)) == 1:
            raise ValueError(
                f"All labels are {labels[0]!r}: a classifier learns from at least two "
                "classes. Add examples of the other classes, or pass class_names=[...] "
                "with all class names to FineTuner."
            )
        if class_names is None:
            class_names = sorted(set(labels))
            if len(class_names) > self.num_classes:
                raise ValueError(
                    f"The labels hold {len(class_names)} classes ({_preview(class_names)}) "
                    f"but the head has num_classes={self.num_classes}. Set "
                    f"num_classes={len(class_names)}."
                )
            if len(class_names) < self.num_classes:
                raise ValueError(
                    f"The labels hold {len(class_names)} classes ({_preview(class_names)}) "
                    f"but the head has num_classes={self.num_classes}. Set "
                    f"num_classes={len(class_names)}, or pass class_names=[...] "
                    "with all class names to FineTuner."
                )
        index = {name: i for i, name in enumerate(class_names)}
        unknown = sorted(set(labels) - set(index))
        if unknown:
            raise ValueError(
                f"Labels {_preview(unknown)} are not among the known classes "
                f"{_preview(class_names)}."
            )
        return np.asarray([index[v] for v in labels], dtype="int32"), list(class_names)

    def _prepare_multi_label(self, y, class_names):
        if isinstance(y, (list, tuple)) and y and isinstance(y[0], (list, tuple, set)):
            flat = sorted({_to_str(v) for labels in y for v in labels})
            if class_names is None:
                class_names = flat
            index = {name: i for i, name in enumerate(class_names)}
            unknown = sorted(set(flat) - set(index))
            if unknown:
                raise ValueError(f"Labels {_preview(unknown)} are not in {_preview(class_names)}.")
            if len(class_names) != self.num_classes:
                raise ValueError(
                    f"The labels hold {len(class_names)} classes but the head has "
                    f"num_classes={self.num_classes}."
                )
            out = np.zeros((len(y), self.num_classes), dtype="float32")
            for row, labels in enumerate(y):
                for v in labels:
                    out[row, index[_to_str(v)]] = 1.0
            return out, list(class_names)
        y = _as_array(y)
        if y.ndim != 2 or y.shape[1] != self.num_classes:
            raise ValueError(
                f"A multi-label head with num_classes={self.num_classes} expects a multi-hot "
                f"matrix of shape (n, {self.num_classes}) or a list of label lists. "
                f"Received labels of shape {y.shape}."
            )
        y = y.astype("float32")
        if not np.all((y == 0) | (y == 1)):
            raise ValueError("Multi-label targets must be 0 or 1.")
        return y, class_names

    def decode(self, outputs, class_names=None, context=None):
        """Turns probabilities into labels (names if known, else ids)."""
        outputs = np.asarray(outputs)
        if self.multi_label:
            threshold = np.asarray(self.threshold, dtype=outputs.dtype)
            hits = outputs >= threshold
            names = class_names or list(range(self.num_classes))
            return [[names[i] for i in np.flatnonzero(row)] for row in hits]
        ids = np.argmax(outputs, axis=-1)
        if class_names:
            return [class_names[i] for i in ids]
        return ids.tolist()

    def report(self, outputs, targets, class_names=None):
        """Accuracy, per-class and averaged precision/recall/F1 and the confusion matrix."""
        names = list(class_names) if class_names else [str(i) for i in range(self.num_classes)]
        if self.multi_label:
            return multi_label_section(outputs, targets, names, self.threshold)
        return classification_section(outputs, targets, names)

    def class_weight(self, labels, mode, class_names=None):
        """Resolves `fit(class_weight=...)`: `"balanced"`, or a dict keyed by class id or name.

        Args:
            labels: encoded training targets (class ids), or None when unknown.
            mode: `"balanced"` (scikit-learn's `compute_class_weight`:
                `n_samples / (n_classes_present * count(c))`; absent classes get
                1.0) or a dict `{class id or class name: weight}`.
            class_names: list of str or None. The FineTuner's class names.

        Returns:
            A dict `{class_id: weight}`.
        """
        if self.multi_label:
            raise ValueError(
                "`class_weight` needs a single-label ClassificationHead; this head has "
                "multi_label=True. Pass sample_weight=... instead."
            )
        if isinstance(mode, dict):
            return _class_weight_dict(mode, self.num_classes, class_names)
        if mode != "balanced":
            raise ValueError(
                '`class_weight` must be a dict {class_id or class name: weight} or "balanced". '
                f"Received: class_weight={mode!r}"
            )
        if labels is None:
            raise ValueError(
                'class_weight="balanced" needs the training labels up front (arrays, paths, a '
                "folder, a DataFrame or texts); with a tf.data.Dataset pass a dict "
                "{class_id: weight} computed from your labels."
            )
        from sklearn.utils.class_weight import compute_class_weight

        labels = np.asarray(labels).reshape(-1).astype("int64")
        present = np.unique(labels)
        weights = compute_class_weight("balanced", classes=present, y=labels)
        result = {i: 1.0 for i in range(self.num_classes)}
        result.update({int(c): float(w) for c, w in zip(present, weights, strict=True)})
        return result

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "multi_label": self.multi_label,
                "threshold": self.threshold,
            }
        )
        return config


def _class_weight_dict(weights, num_classes, class_names):
    """`{class id or name: weight}` -> `{class id: weight}`, every key checked."""
    index = {name: i for i, name in enumerate(class_names or [])}
    result = {}
    for key, value in weights.items():
        if isinstance(key, (str, bytes)):
            name = _to_str(key)
            if name not in index:
                known = _preview(class_names) if class_names else "none yet"
                raise ValueError(
                    f"class_weight names class {name!r}, which is not a class of this model "
                    f"(known class names: {known}). Use class ids, or names from class_names."
                )
            key = index[name]
        if isinstance(key, bool) or not isinstance(key, (int, np.integer)) or not 0 <= key < num_classes:
            raise ValueError(
                f"class_weight key {key!r} is not a class id in 0..{num_classes - 1}."
            )
        result[int(key)] = float(value)
    return result


#: Names (lower case, without "_") of Keras regression losses, as strings, functions or classes.
REGRESSION_LOSSES = {
    "mse", "meansquarederror", "mae", "meanabsoluteerror", "mape",
    "meanabsolutepercentageerror", "msle", "meansquaredlogarithmicerror", "huber", "huberloss",
    "logcosh",
}


def _loss_name(loss):
    """A loss' name, lower case without "_": "mse", "meansquarederror", ... or None."""
    name = loss if isinstance(loss, str) else getattr(loss, "__name__", None)
    return name.lower().replace("_", "") if isinstance(name, str) else None


def _as_array(y):
    if hasattr(y, "to_numpy"):
        y = y.to_numpy()
    return np.asarray(y)


def _to_str(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _preview(names, limit=6):
    names = list(names)
    text = ", ".join(repr(n) for n in names[:limit])
    return f"[{text}{', ...' if len(names) > limit else ''}]"
