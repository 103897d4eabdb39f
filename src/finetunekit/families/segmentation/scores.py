"""Scores of `SegmentationHead`: IoU and Dice from the confusion matrix, pixel accuracy; void pixels left out."""

import keras
import numpy as np

from finetunekit.core.reports import Report


def segmentation_section(outputs, targets, names, ignore_index=None):
    """A `Report` of per-pixel predictions against masks, from the confusion matrix.

    Args:
        outputs: `(n, H, W, C)` logits (or probabilities).
        targets: `(n, H, W)` class ids at the same size.
        names: class names, one per class.
        ignore_index: int or None. Pixels with this target id (void) are
            left out of every score.

    Returns:
        A `Report` with `task="segmentation"`: metrics `mean_iou` (over the
        classes that occur in the targets or predictions), `pixel_accuracy`,
        `mean_dice` and `frequency_weighted_iou`; per class `iou`, `dice`,
        `precision`, `recall` and `support` (pixels); the confusion matrix.
    """
    from sklearn.metrics import confusion_matrix

    outputs = np.asarray(outputs)
    y_true = np.asarray(targets).reshape(-1).astype("int64")
    y_pred = np.argmax(outputs, axis=-1).reshape(-1)
    if ignore_index is not None:
        kept = y_true != ignore_index
        y_true, y_pred = y_true[kept], y_pred[kept]
    labels = list(range(len(names)))
    matrix = confusion_matrix(y_true, y_pred, labels=labels)
    scores = scores_from_confusion(matrix)
    present = scores["union"] > 0
    support = matrix.sum(axis=1)
    per_class = {
        str(name): {
            "iou": float(scores["iou"][i]), "dice": float(scores["dice"][i]),
            "precision": float(scores["precision"][i]), "recall": float(scores["recall"][i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(names)
    }
    total = max(int(matrix.sum()), 1)
    metrics = {
        "mean_iou": float(scores["iou"][present].mean()) if present.any() else 0.0,
        "pixel_accuracy": float(np.trace(matrix) / total),
        "mean_dice": float(scores["dice"][present].mean()) if present.any() else 0.0,
        "frequency_weighted_iou": float((support / total * scores["iou"]).sum()),
    }
    return Report("segmentation", metrics, per_class, matrix, names, len(outputs))


def scores_from_confusion(matrix):
    """Per-class IoU, Dice, precision and recall of a `(C, C)` confusion matrix (rows: true).

    Returns:
        A dict of float arrays `iou`, `dice`, `precision`, `recall` and `union`
        (TP + FP + FN); a class absent from targets and predictions scores 0.
    """
    matrix = np.asarray(matrix, "float64")
    tp = np.diag(matrix)
    fp = matrix.sum(axis=0) - tp
    fn = matrix.sum(axis=1) - tp
    union = tp + fp + fn

    def ratio(a, b):
        return np.divide(a, b, out=np.zeros_like(a), where=b > 0)

    return {
        "iou": ratio(tp, union), "dice": ratio(2 * tp, 2 * tp + fp + fn),
        "precision": ratio(tp, tp + fp), "recall": ratio(tp, tp + fn), "union": union,
    }


@keras.saving.register_keras_serializable(package="finetunekit")
class PixelAccuracy(keras.metrics.Metric):
    """Fraction of labelled pixels whose most likely class is right; void pixels do not count.

    Args:
        ignore_index: int or None. Target id of void (unlabelled) pixels.
            Defaults to None (every pixel counts).
        name: str. Defaults to `"pixel_accuracy"`.
        **kwargs: Standard `keras.metrics.Metric` arguments.

    Example:
    ```python
    metric = PixelAccuracy(ignore_index=255)
    metric.update_state(masks, logits)  # masks (b, H, W) ids, logits (b, H, W, C)
    float(metric.result())
    ```
    """

    def __init__(self, ignore_index=None, name="pixel_accuracy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.ignore_index = None if ignore_index is None else int(ignore_index)
        self.correct = self.add_variable(shape=(), initializer="zeros", name="correct")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        ops = keras.ops
        labels = ops.cast(y_true, "int32")
        if len(labels.shape) == len(y_pred.shape):  # (..., 1) masks
            labels = ops.squeeze(labels, axis=-1)
        weight = ops.ones(ops.shape(labels), "float32")
        if sample_weight is not None:
            weight = ops.cast(sample_weight, "float32")
            while len(weight.shape) < len(labels.shape):  # per-image weights
                weight = ops.expand_dims(weight, -1)
            weight = ops.broadcast_to(weight, ops.shape(labels))
        if self.ignore_index is not None:
            weight = weight * ops.cast(labels != self.ignore_index, "float32")
        right = ops.cast(ops.equal(ops.cast(ops.argmax(y_pred, axis=-1), "int32"), labels), "float32")
        self.correct.assign_add(ops.cast(ops.sum(right * weight), self.correct.dtype))
        self.count.assign_add(ops.cast(ops.sum(weight), self.count.dtype))

    def result(self):
        return keras.ops.divide_no_nan(self.correct, self.count)

    def reset_state(self):
        self.correct.assign(0.0)
        self.count.assign(0.0)

    def get_config(self):
        return {**super().get_config(), "ignore_index": self.ignore_index}
