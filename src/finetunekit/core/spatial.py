"""The spatial-head protocol: targets that live on the image (masks, boxes).

A `SpatialHead` has `target_layout = "spatial"`. Its targets must be resized
and augmented together with their images, so the image pipeline
(`finetunekit.families.image.spatial_pipeline.SpatialPipeline`) does that in `tf.data`
instead of the model doing augmentation on images alone:

1. `read_data(x, y)`: a head may read its own file formats (a folder of PNG
   masks, a COCO json, ...) into `(images, targets)`.
2. `encode_targets(y, class_names)`: per-example targets in image pixel
   coordinates, one entry per image: an `(h, w)` class-id mask for
   `spatial_key == "segmentation_masks"`, a dict `{"boxes": (k, 4) xyxy,
   "labels": (k,)}` for `spatial_key == "bounding_boxes"`.
3. The pipeline resizes each image to the backbone's input size with its
   targets (masks: nearest neighbour; boxes: scaled), batches, runs the
   augmentation layers on `{"images", spatial_key}` in training, clips boxes
   to the image and drops the boxes that leave it.
4. The model's `y` is the batch of resized, augmented targets: `(b, H, W)`
   class ids, or `(b, max_boxes, 5)` rows of `x1, y1, x2, y2, class` padded
   with class -1 (a detection loss matches them to anchors itself). Reports
   receive the same targets, at the model's input size.
5. `decode(outputs, class_names, context)`: `context` is a `SpatialContext`
   with each input's original `(height, width)`, so predictions come back in
   the input's own size.
"""

from finetunekit.core.data.spatial_targets import BOXES, MASKS, SpatialContext
from finetunekit.core.head import Head

SPATIAL_KEYS = (MASKS, BOXES)
__all__ = ["SPATIAL_KEYS", "SpatialContext", "SpatialHead"]


class SpatialHead(Head):
    """Base class of heads whose targets are masks or boxes on the image.

    Subclasses set `spatial_key` (`"segmentation_masks"` or
    `"bounding_boxes"`) and implement `call`, `encode_targets` and
    `default_loss`; see the module docstring for the protocol.

    Args:
        **kwargs: Standard `keras.layers.Layer` arguments.
    """

    target_layout = "spatial"
    augment_in_model = False
    spatial_key = None

    def read_data(self, x, y):
        """Reads head-specific file formats into `(images, targets)`; the default keeps them."""
        return x, y

    def check_learnable(self, targets, sizes):
        """Warns (with counts) about targets the head cannot learn at its input size.

        Called by the spatial pipeline after the targets were encoded and
        checked against their images; the default finds nothing.

        Args:
            targets: encoded per-image targets (`encode_targets`).
            sizes: per-image `(height, width)` of the original images.
        """
        return None
