"""Anchors of `fk.DetectionHead` (keras-hub's `AnchorGenerator`) and the box encoding it learns.

The detector predicts, for every anchor of every pyramid level, 4 box deltas
(`ENCODING` offsets from the anchor, divided by `box_variance`) and one logit
per class. The loss (`loss.py`) encodes targets and the decoder (`decode.py`)
decodes predictions with the same anchors and encoding.
"""

import numpy as np
from keras import ops

#: Pixel box formats a `DetectionHead` accepts (`keras.utils.bounding_boxes` names).
BOX_FORMATS = ("xyxy", "yxyx", "xywh", "center_xywh", "center_yxhw")
ENCODING = "center_xywh"


def anchor_generator(min_level, max_level, num_scales, aspect_ratios, anchor_size):
    """A keras-hub `AnchorGenerator` of xyxy pixel anchors."""
    from keras_hub.layers import AnchorGenerator

    return AnchorGenerator(
        "xyxy", min_level=min_level, max_level=max_level, num_scales=num_scales,
        aspect_ratios=list(aspect_ratios), anchor_size=anchor_size,
    )


def anchor_boxes(image_size, **anchor_options):
    """All anchors, level after level, as a float32 `(num_anchors, 4)` xyxy numpy array.

    Args:
        image_size: `(height, width)` of the model input.
        **anchor_options: `min_level`, `max_level`, `num_scales`,
            `aspect_ratios`, `anchor_size` (see `DetectionHead`).
    """
    generator = anchor_generator(**anchor_options)
    levels = generator(np.zeros((int(image_size[0]), int(image_size[1]), 1), "float32"))
    return np.concatenate([ops.convert_to_numpy(v) for v in levels.values()]).astype("float32")


def best_anchor_iou(boxes, anchors, chunk=256):
    """For each xyxy box, its highest IoU with any anchor (a float32 `(n,)` array)."""
    boxes = np.asarray(boxes, "float32").reshape(-1, 4)
    anchor_area = (anchors[:, 2] - anchors[:, 0]) * (anchors[:, 3] - anchors[:, 1])
    best = []
    for start in range(0, len(boxes), chunk):
        part = boxes[start : start + chunk, None, :]
        width = np.minimum(part[..., 2], anchors[:, 2]) - np.maximum(part[..., 0], anchors[:, 0])
        height = np.minimum(part[..., 3], anchors[:, 3]) - np.maximum(part[..., 1], anchors[:, 1])
        width, height = np.clip(width, 0, None), np.clip(height, 0, None)
        overlap = width * height
        area = (part[..., 2] - part[..., 0]) * (part[..., 3] - part[..., 1])
        best.append((overlap / (area + anchor_area - overlap + 1e-9)).max(axis=1))
    return np.concatenate(best) if best else np.zeros(0, "float32")
