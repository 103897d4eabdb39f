"""Semantic segmentation head: a U-Net or FPN decoder on the backbone's pyramid, one class per pixel."""

import keras
import numpy as np

from finetunekit.core.data.spatial_targets import MASKS
from finetunekit.core.spatial import SpatialHead
from finetunekit.families.segmentation.loss import SegmentationLoss, check_ignore_index
from finetunekit.families.segmentation.masks import check_masks, read_mask_data
from finetunekit.families.segmentation.scores import PixelAccuracy, segmentation_section

DECODERS = ("unet", "fpn")


@keras.saving.register_keras_serializable(package="finetunekit")
class SegmentationHead(SpatialHead):
    """Semantic segmentation: class logits for every pixel of the input.

    The decoder taps the backbone's pyramid (`P2`..`P5` stage outputs) and its
    last feature map. `decoder="unet"`: from the deepest level up, upsample,
    concatenate the next level's features (a skip connection) and run two
    3x3 convolutions. `decoder="fpn"`: 1x1 lateral convolutions, a top-down
    path of sums and a 3x3 convolution per level, every level upsampled to
    the finest and summed (semantic FPN). Class logits are computed at the
    finest level (stride 4 for most CNNs) and bilinearly upsampled to the
    model's input size; `predict_masks` resizes them to each input image's
    own size before the argmax.

    Targets are masks: an `(n, h, w)` array (or a list of `(h, w)` arrays) of
    class ids at each image's size, or `fit("images/", "masks/")`: a folder
    of images and a folder of PNG masks paired by file name. The data
    pipeline resizes masks with their images (nearest neighbour) and
    augments them together.

    Args:
        num_classes: int >= 2. Number of classes, background included.
        decoder: `"unet"` or `"fpn"`. Defaults to `"unet"`.
        filters: int. Width of the finest decoder level (U-Net levels double
            it per level down, up to 8x; FPN uses it on every level).
            Defaults to `64`.
        dice_weight: float >= 0. Adds `dice_weight * (1 - soft Dice)` to the
            cross-entropy (helps rare classes). Defaults to `0.0`.
        dropout: float. Dropout before the class logits. Defaults to `0.0`.
        ignore_index: int or None. Mask value of void (unlabelled) pixels,
            e.g. 255 in Pascal VOC and Cityscapes masks: they count in
            neither the loss, nor the logged `mean_iou` and
            `pixel_accuracy`, nor `report=True`. Defaults to None (every
            mask value must be a class id).
        **kwargs: Standard `keras.layers.Layer` arguments.

    Returns:
        Logits of shape `(batch, height, width, num_classes)` at the
        backbone's input size, float32.

    Example:
    ```python
    seg = fk.FineTuner(backbone="efficientnetv2b0", head=fk.SegmentationHead(3),
                       input_shape=(256, 256, 3), augment={"horizontal_flip": True})
    seg.fit(images, masks, epochs=5)
    seg.predict_masks(images)       # class ids at each image's own size
    seg.evaluate(images, masks, report=True)
    ```
    """

    needs = ("features", "pyramid", "images")
    spatial_key = MASKS
    task_methods = ("predict_masks",)
    cli_task = "segmentation"

    def __init__(self, num_classes, decoder="unet", filters=64, dice_weight=0.0, dropout=0.0,
                 ignore_index=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(num_classes, bool) or not float(num_classes).is_integer() or num_classes < 2:
            raise ValueError(
                "`num_classes` must be a whole number >= 2 (background counts as a class). "
                f"Received: num_classes={num_classes!r}"
            )
        if decoder not in DECODERS:
            raise ValueError(
                f'Unknown decoder "{decoder}". Expected one of "unet", "fpn". '
                f"Received: decoder={decoder!r}"
            )
        if isinstance(filters, bool) or int(filters) != filters or filters < 1:
            raise ValueError(f"`filters` must be an int >= 1. Received: filters={filters!r}")
        self.num_classes = int(num_classes)
        self.decoder = decoder
        self.filters = int(filters)
        self.dice_weight = float(SegmentationLoss(dice_weight).dice_weight)
        self.dropout = float(dropout)
        self.ignore_index = check_ignore_index(ignore_index)
        self.levels, self.blocks = [], []
        self.dropout_layer = keras.layers.Dropout(self.dropout) if self.dropout else None
        self.classifier = keras.layers.Conv2D(self.num_classes, 1, name="logits", dtype="float32")

    # ----------------------------------------------------------------- model
    def _levels(self, input_shape):
        """Pyramid levels finer than the features, deepest first."""
        features = input_shape["features"][1]
        pyramid = input_shape.get("pyramid") or {}
        return [
            level for level in sorted(pyramid, reverse=True)
            if pyramid[level][1] is not None and pyramid[level][1] > features
        ]

    def build(self, input_shape):
        self.levels = self._levels(input_shape)
        pyramid = input_shape.get("pyramid") or {}
        channels = [input_shape["features"][-1]] + [pyramid[level][-1] for level in self.levels]
        conv = dict(padding="same", activation="relu", dtype=self.dtype_policy)
        blocks, width = [], channels[0]
        for index, level in enumerate(self.levels if self.decoder == "unet" else ["top"] + self.levels):
            if self.decoder == "unet":
                out = self.filters * 2 ** min(max(int(level[1:]) - 2, 0), 3)
                first = keras.layers.Conv2D(out, 3, name=f"{level}_conv1", **conv)
                second = keras.layers.Conv2D(out, 3, name=f"{level}_conv2", **conv)
                first.build((None, None, None, width + channels[index + 1]))
            else:
                out = self.filters
                first = keras.layers.Conv2D(out, 1, name=f"{level}_lateral", dtype=self.dtype_policy)
                second = keras.layers.Conv2D(out, 3, name=f"{level}_smooth", **conv)
                first.build((None, None, None, channels[index]))
            second.build((None, None, None, out))
            blocks.append((first, second))
            width = out
        self.blocks = [layer for block in blocks for layer in block]
        if self.dropout_layer is not None:
            self.dropout_layer.build((None, None, None, width))
        self.classifier.build((None, None, None, width))

    def call(self, outputs, training=None):
        pyramid = outputs.get("pyramid") or {}
        skips = [pyramid[level] for level in self.levels]
        if self.decoder == "unet":
            x = outputs["features"]
            for skip, first, second in zip(skips, self.blocks[::2], self.blocks[1::2]):
                x = keras.ops.concatenate([_resize_like(x, skip), skip], axis=-1)
                x = second(first(x))
        else:
            x = self._fpn(outputs["features"], skips)
        if self.dropout_layer is not None:
            x = self.dropout_layer(x, training=training)
        logits = self.classifier(x)
        return _resize_like(logits, outputs["images"])

    def _fpn(self, features, skips):
        merged, finest = [], skips[-1] if skips else features
        x = None
        pairs = zip([features] + skips, self.blocks[::2], self.blocks[1::2])
        for level, lateral, smooth in pairs:
            lateral_x = lateral(level)
            x = lateral_x if x is None else lateral_x + _resize_like(x, lateral_x)
            merged.append(_resize_like(smooth(x), finest))
        return keras.ops.sum(keras.ops.stack(merged, axis=0), axis=0)

    def compute_output_shape(self, input_shape):
        images = input_shape["images"]
        return (images[0], images[1], images[2], self.num_classes)

    # ------------------------------------------------------------------ task
    def default_loss(self, label_smoothing=0.0):
        return SegmentationLoss(
            self.dice_weight, label_smoothing=label_smoothing, ignore_index=self.ignore_index
        )

    def default_metrics(self):
        return [
            keras.metrics.MeanIoU(
                self.num_classes, name="mean_iou", ignore_class=self.ignore_index,
                sparse_y_true=True, sparse_y_pred=False,
            ),
            PixelAccuracy(self.ignore_index),
        ]

    def read_data(self, x, y):
        """Reads a folder of images with a folder of PNG masks (paired by file name)."""
        return read_mask_data(x, y)

    def encode_targets(self, y, class_names=None):
        """Checks class-id masks.

        Args:
            y: an `(n, h, w)` array or a list of `(h, w)` arrays of class ids.
            class_names: list of str or None. One name per class id.

        Returns:
            `(masks, class_names)`: a list of int32 arrays and the names.

        Raises:
            ValueError: masks of the wrong rank or dtype, class ids out of
                range, or a number of class names other than `num_classes`.
        """
        if class_names is not None and len(class_names) != self.num_classes:
            raise ValueError(
                f"{len(class_names)} class names ({list(class_names)[:6]}) for a "
                f"SegmentationHead with num_classes={self.num_classes}: name every class id, "
                "background included."
            )
        return check_masks(y, self.num_classes, self.ignore_index), class_names

    def decode(self, outputs, class_names=None, context=None):
        """Class-id masks at each input's own size.

        Args:
            outputs: `(n, H, W, num_classes)` logits at the model's input size.
            class_names: unused (masks hold class ids; names index them).
            context: a `SpatialContext` with each input's `(height, width)`.

        Returns:
            An `(n, h, w)` int32 array when all inputs have one size, else a
            list of `(h, w)` arrays.
        """
        outputs = np.asarray(outputs)
        sizes = context.sizes if context is not None else [outputs.shape[1:3]] * len(outputs)
        masks = [_mask_at(logits, tuple(size)) for logits, size in zip(outputs, sizes, strict=True)]
        if len({m.shape for m in masks}) == 1:
            return np.stack(masks) if masks else np.zeros((0,) + outputs.shape[1:3], "int32")
        return masks

    def predict_masks(self, tuner, x, batch_size=None, **kwargs):
        """Class-id masks of images, at each image's own size: `ft.predict_masks(x)`.

        Args:
            tuner: the FineTuner.
            x: images: an array, paths, or a folder of images.
            batch_size: int. Defaults to 32.

        Returns:
            An `(n, h, w)` int32 array, or a list of `(h, w)` arrays for
            images of different sizes.
        """
        return tuner.predict_labels(x, batch_size=batch_size, **kwargs)

    def serving_outputs(self, tuner, outputs, input_size=None):
        """Class-id masks at the input's size, what an exported model serves.

        Args:
            tuner: the `FineTuner` (unused).
            outputs: `(b, H, W, num_classes)` logits at the model's input size.
            input_size: int32 tensor `(height, width)` of the raw images, or None.

        Returns:
            `{"masks": (b, height, width) int32 class ids}` (as `predict_masks`).
        """
        import tensorflow as tf

        if input_size is not None:
            outputs = tf.image.resize(outputs, input_size, method="bilinear")
        return {"masks": tf.cast(tf.argmax(outputs, axis=-1), tf.int32)}

    def report(self, outputs, targets, class_names=None):
        """Mean IoU, per-class IoU and Dice, pixel accuracy (at the model's input size), void left out."""
        names = class_names or [str(i) for i in range(self.num_classes)]
        return segmentation_section(outputs, targets, names, self.ignore_index)

    def get_config(self):
        return {
            **super().get_config(), "num_classes": self.num_classes, "decoder": self.decoder,
            "filters": self.filters, "dice_weight": self.dice_weight, "dropout": self.dropout,
            "ignore_index": self.ignore_index,
        }


def _resize_like(x, like):
    """Bilinearly resizes `x` to the spatial size of `like` (static shapes)."""
    size = tuple(like.shape[1:3])
    if tuple(x.shape[1:3]) == size:
        return x
    return keras.ops.image.resize(x, size, interpolation="bilinear")


def _mask_at(logits, size):
    if tuple(logits.shape[:2]) != size:
        import tensorflow as tf

        logits = tf.image.resize(logits, size, method="bilinear").numpy()
    return np.argmax(logits, axis=-1).astype("int32")
