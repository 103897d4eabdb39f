"""The loss of `SegmentationHead`: per-pixel cross-entropy plus an optional soft Dice term."""

import numbers

import keras


@keras.saving.register_keras_serializable(package="finetunekit")
class SegmentationLoss(keras.losses.Loss):
    """Per-pixel cross-entropy on class-id masks, plus an optional soft Dice term.

    The loss of one image is the mean cross-entropy of its pixels plus
    `dice_weight * (1 - mean soft Dice)` over the classes, so sample weights
    weigh whole images. Pixels labelled `ignore_index` (void) count in
    neither term: their predictions do not change the loss.

    Args:
        dice_weight: float >= 0. Weight of the Dice term. Defaults to `0.0`.
        label_smoothing: float in [0, 1). Defaults to `0.0`.
        from_logits: bool. Whether predictions are logits. Defaults to `True`.
        ignore_index: int or None. Target id of void pixels (e.g. 255).
            Defaults to None (every pixel counts).
        **kwargs: Standard `keras.losses.Loss` arguments (`reduction`, `name`).

    Example:
    ```python
    loss = fk.heads.SegmentationLoss(dice_weight=1.0, ignore_index=255)
    loss(masks, logits)     # masks (b, H, W) ids, logits (b, H, W, C)
    ```
    """

    def __init__(self, dice_weight=0.0, label_smoothing=0.0, from_logits=True, ignore_index=None,
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
        self.ignore_index = check_ignore_index(ignore_index)

    def call(self, y_true, y_pred):
        ops = keras.ops
        y_pred = ops.cast(y_pred, "float32")
        classes = ops.shape(y_pred)[-1]
        labels = ops.cast(y_true, "int32")
        if len(labels.shape) == len(y_pred.shape):  # (b, H, W, 1) masks
            labels = ops.squeeze(labels, axis=-1)
        valid = ops.ones(ops.shape(labels), "float32")
        if self.ignore_index is not None:
            valid = ops.cast(labels != self.ignore_index, "float32")
            labels = ops.where(labels == self.ignore_index, 0, labels)
        one_hot = ops.one_hot(labels, classes) * valid[..., None]
        smoothed = one_hot
        if self.label_smoothing:
            smoothed = one_hot * (1.0 - self.label_smoothing) + self.label_smoothing / ops.cast(
                classes, "float32"
            )
        cross = keras.losses.categorical_crossentropy(smoothed, y_pred, from_logits=self.from_logits)
        batch = ops.shape(cross)[0]
        counted = ops.sum(ops.reshape(valid, (batch, -1)), axis=-1)
        summed = ops.sum(ops.reshape(cross * valid, (batch, -1)), axis=-1)
        loss = summed / ops.maximum(counted, 1.0)
        if not self.dice_weight:
            return loss
        probs = ops.softmax(y_pred, axis=-1) if self.from_logits else y_pred
        probs = probs * valid[..., None]
        spatial = (1, 2)
        overlap = ops.sum(probs * one_hot, axis=spatial)
        sizes = ops.sum(probs, axis=spatial) + ops.sum(one_hot, axis=spatial)
        dice = (2.0 * overlap + 1.0) / (sizes + 1.0)
        return loss + self.dice_weight * (1.0 - ops.mean(dice, axis=-1))

    def get_config(self):
        return {
            **super().get_config(), "dice_weight": self.dice_weight,
            "label_smoothing": self.label_smoothing, "from_logits": self.from_logits,
            "ignore_index": self.ignore_index,
        }


def check_ignore_index(ignore_index):
    """`ignore_index` as an int (or None); raises for anything else."""
    if ignore_index is None:
        return None
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Real) or not float(
        ignore_index
    ).is_integer():
        raise ValueError(
            "`ignore_index` is the class id of void (unlabelled) pixels, a whole number such as "
            f"255, or None. Received: ignore_index={ignore_index!r}"
        )
    return int(ignore_index)
