"""Scores and loss of `SegmentationHead`: IoU and Dice from the confusion matrix; CE + Dice loss."""

import keras
import numpy as np

from finetunekit.core.reports import Report


def segmentation_section(outputs, targets, names):
    """A `Report` of per-pixel predictions against masks, from the confusion matrix.

    Args:
        outputs: `(n, H, W, C)` logits (or probabilities).
        targets: `(n, H, W)` class ids at the same size.
        names: class names, one per class.

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
class SegmentationLoss(keras.losses.Loss):
    """Per-pixel cross-entropy on class-id masks, plus an optional soft Dice term.

    The loss of one image is the mean cross-entropy of its pixels plus
    `dice_weight * (1 - mean soft Dice)` over the classes, so sample weights
    weigh whole images.

    Args:
        dice_weight: float >= 0. Weight of the Dice term. Defaults to `0.0`.
        label_smoothing: float in [0, 1). Defaults to `0.0`.
        from_logits: bool. Whether predictions are logits. Defaults to `True`.
        **kwargs: Standard `keras.losses.Loss` arguments (`reduction`, `name`).

    Example:
    ```python
    loss = fk.heads.SegmentationLoss(dice_weight=1.0)
    loss(masks, logits)     # masks (b, H, W) ids, logits (b, H, W, C)
    ```
    """

    def __init__(self, dice_weight=0.0, label_smoothing=0.0, from_logits=True,
                 name="segmentation_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        if float(dice_weight) < 0:
            raise ValueError(f"`dice_weight` must be >= 0. Received: dice_weight={dice_weight}")
        if not 0.0 <= float(label_smoothing) < 1.0:
            raise ValueError(
                f"`label_smoothing` must be in [0, 1). Received: label_smoothing={label_smoothing}"
            )
        self.dice_weight = float(dice_weight)
        self.label_smoothing = float(label_smoothing)
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        ops = keras.ops
        y_pred = ops.cast(y_pred, "float32")
        classes = ops.shape(y_pred)[-1]
        one_hot = ops.one_hot(ops.cast(y_true, "int32"), classes)
        if self.label_smoothing:
            smoothed = one_hot * (1.0 - self.label_smoothing) + self.label_smoothing / ops.cast(
                classes, "float32"
            )
        else:
            smoothed = one_hot
        cross = keras.losses.categorical_crossentropy(smoothed, y_pred, from_logits=self.from_logits)
        loss = ops.mean(ops.reshape(cross, (ops.shape(cross)[0], -1)), axis=-1)
        if not self.dice_weight:
            return loss
        probs = ops.softmax(y_pred, axis=-1) if self.from_logits else y_pred
        spatial = (1, 2)
        overlap = ops.sum(probs * one_hot, axis=spatial)
        sizes = ops.sum(probs, axis=spatial) + ops.sum(one_hot, axis=spatial)
        dice = (2.0 * overlap + 1.0) / (sizes + 1.0)
        return loss + self.dice_weight * (1.0 - ops.mean(dice, axis=-1))

    def get_config(self):
        return {
            **super().get_config(), "dice_weight": self.dice_weight,
            "label_smoothing": self.label_smoothing, "from_logits": self.from_logits,
        }
