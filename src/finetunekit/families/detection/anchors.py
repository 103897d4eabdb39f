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
