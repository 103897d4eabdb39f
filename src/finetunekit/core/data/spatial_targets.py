"""Masks and boxes that travel with their images: checks, packing and `tf.data` transforms.

Spatial targets (see `finetunekit.core.spatial`) arrive one per image in the
image's own pixel coordinates: an `(h, w)` class-id mask, or a dict
`{"boxes": (k, 4) xyxy, "labels": (k,)}`. This module checks them against
their images' sizes, packs them into tensors `tf.data` can slice, and resizes,
clips and batches them with the images.
"""

import dataclasses

import numpy as np

MASKS = "segmentation_masks"
BOXES = "bounding_boxes"


@dataclasses.dataclass
class SpatialContext:
    """What a spatial head's `decode` knows of the inputs.

    Attributes:
        sizes: list of `(height, width)`: each input image's own size.
        model_size: `(height, width)` the model saw.
    """

    sizes: list
    model_size: tuple


def check_targets(key, targets, sizes):
    """Raises a clear error when a mask or a box does not fit its image.

    Args:
        key: `"segmentation_masks"` or `"bounding_boxes"`.
        targets: per-image targets (see the module docstring).
        sizes: per-image `(height, width)`.
    """
    for index, (target, (height, width)) in enumerate(zip(targets, sizes)):
        if key == MASKS:
            shape = tuple(np.shape(target))
            if shape != (height, width):
                raise ValueError(
                    f"Mask {index} has size {shape} but its image is {(height, width)} "
                    "(height, width): a mask gives one class id per pixel of its image. "
                    "Resize masks with nearest-neighbour interpolation to their images' size."
                )
            continue
        boxes = np.asarray(target["boxes"], "float32").reshape(-1, 4)
        if not len(boxes):
            continue
        if np.any(boxes[:, 2] < boxes[:, 0]) or np.any(boxes[:, 3] < boxes[:, 1]):
            row = int(np.flatnonzero((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]))[0])
            raise ValueError(
                f"Image {index}, box {row}: {boxes[row].tolist()} has x2 < x1 or y2 < y1 "
                "(read as x1, y1, x2, y2 pixels). Is `bounding_box_format` right "
                "(\"xywh\" boxes read as \"xyxy\" look like this)?"
            )
        outside = (boxes < -1.0) | (boxes > _limits(width, height))
        if np.any(outside):
            row = int(np.flatnonzero(outside.any(axis=1))[0])
            raise ValueError(
                f"Image {index}, box {row}: {boxes[row].tolist()} lies outside its "
                f"{width}x{height} (width x height) image. Boxes are pixel coordinates of "
                "the image they belong to; check `bounding_box_format` and whether the boxes "
                "are normalised (multiply by the image size)."
            )


def _limits(width, height, slack=1.0):
    return np.array([width, height, width, height], "float32") + slack


def pack_targets(key, targets):
    """Tensors `tf.data` can slice: `{"mask", "mask_shape"}` or `{"boxes", "labels"}`.

    Masks of one size become one `(n, h, w)` array; masks of different sizes
    a flat ragged tensor with their shapes. Boxes are padded to the most boxes
    of any image with class -1 (an image without boxes is valid).
    """
    import tensorflow as tf

    if key == MASKS:
        masks = [np.asarray(m, "int32") for m in targets]
        shapes = np.array([m.shape for m in masks], "int32")
        flat = np.concatenate([m.reshape(-1) for m in masks]) if masks else np.zeros(0, "int32")
        lengths = shapes.prod(axis=1) if len(masks) else np.zeros(0, "int64")
        ragged = tf.RaggedTensor.from_row_lengths(flat, lengths)
        return {"mask": ragged, "mask_shape": shapes}
    most = max([len(np.asarray(t["labels"]).reshape(-1)) for t in targets] + [1])
    boxes = np.full((len(targets), most, 4), -1.0, "float32")
    labels = np.full((len(targets), most), -1, "int32")
    for index, target in enumerate(targets):
        rows = np.asarray(target["boxes"], "float32").reshape(-1, 4)
        boxes[index, : len(rows)] = rows
        labels[index, : len(rows)] = np.asarray(target["labels"]).reshape(-1)
    return {"boxes": boxes, "labels": labels}


def resize_example(key, image, target, image_size):
    """Resizes one image to `image_size` with its target (tf ops, in `Dataset.map`)."""
    import tensorflow as tf

    size = tf.shape(image)[:2]
    resized = tf.image.resize(tf.cast(image, "float32"), image_size)
    if key == MASKS:
        mask = tf.reshape(target["mask"], target["mask_shape"])[..., None]
        mask = tf.image.resize(mask, image_size, method="nearest")
        return resized, tf.cast(mask, "int32")
    scale_y = float(image_size[0]) / tf.cast(size[0], "float32")
    scale_x = float(image_size[1]) / tf.cast(size[1], "float32")
    scale = tf.stack([scale_x, scale_y, scale_x, scale_y])
    valid = target["labels"] >= 0
    boxes = tf.where(valid[:, None], target["boxes"] * scale, -1.0)
    return resized, {"boxes": boxes, "labels": target["labels"]}


def clip_boxes(boxes, image_size, min_size=1.0):
    """Clips boxes to the image; boxes left smaller than `min_size` pixels get class -1.

    Args:
        boxes: dict of `"boxes"` `(b, k, 4)` xyxy and `"labels"` `(b, k)` tensors.
        image_size: `(height, width)`.

    Returns:
        The same dict, clipped, with dropped rows set to -1.
    """
    import tensorflow as tf

    height, width = float(image_size[0]), float(image_size[1])
    limit = tf.constant([width, height, width, height], "float32")
    clipped = tf.clip_by_value(tf.cast(boxes["boxes"], "float32"), 0.0, limit)
    labels = tf.cast(boxes["labels"], "int32")
    big = ((clipped[..., 2] - clipped[..., 0]) >= min_size) & (
        (clipped[..., 3] - clipped[..., 1]) >= min_size
    )
    keep = big & (labels >= 0)
    return {
        "boxes": tf.where(keep[..., None], clipped, -1.0),
        "labels": tf.where(keep, labels, -1),
    }


def as_model_targets(key, targets):
    """The model's `y`: `(b, H, W)` int32 class ids, or `(b, k, 5)` rows `x1, y1, x2, y2, class`."""
    import tensorflow as tf

    if key == MASKS:
        return tf.cast(tf.squeeze(targets, axis=-1), "int32")
    labels = tf.cast(targets["labels"], "float32")[..., None]
    return tf.concat([tf.cast(targets["boxes"], "float32"), labels], axis=-1)
