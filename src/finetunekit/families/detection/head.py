"""Object detection head: an FPN with RetinaNet class and box subnets on the backbone's pyramid."""

import math

import keras
import numpy as np
from keras import ops

from finetunekit.core._keras_compat import (
    retinanet_feature_pyramid_class,
    retinanet_prediction_head_class,
)
from finetunekit.core.data.spatial_targets import BOXES
from finetunekit.core.notices import warn_user
from finetunekit.core.spatial import SpatialHead
from finetunekit.families.detection.anchors import BOX_FORMATS, anchor_boxes, best_anchor_iou
from finetunekit.families.detection.decode import detections, serving_detections
from finetunekit.families.detection.loss import DetectionLoss
from finetunekit.families.detection.targets import encode_box_targets, to_user_boxes

#: IoU with an anchor at which a box is a positive target (keras-hub RetinaNetLabelEncoder).
POSITIVE_IOU = 0.5


@keras.saving.register_keras_serializable(package="finetunekit")
class DetectionHead(SpatialHead):
    """RetinaNet-style object detector on any convolutional image backbone.

    The backbone's pyramid features `P3`..`P5` feed keras-hub's
    `FeaturePyramid` (levels above the backbone's deepest one, such as `P6`
    and `P7`, come from strided convolutions), and two subnets shared across
    levels (keras-hub's RetinaNet `PredictionHead`) predict, for every anchor
    (`keras_hub.layers.AnchorGenerator`), 4 box deltas and one logit per
    class. The loss (`fk.heads.DetectionLoss`) matches the ground-truth boxes
    to anchors itself; `FineTuner.predict_boxes` decodes and applies
    non-maximum suppression (`keras_hub.layers.NonMaxSuppression`).

    Targets: `y={"boxes": [...], "labels": [...]}` with one `(k, 4)` array of
    pixel boxes in `bounding_box_format` and one `(k,)` array of class ids or
    names per image (images without boxes are valid), or a COCO json, a
    Pascal VOC folder or a YOLO folder (see `fk.data.read_detection_data`).

    Args:
        num_classes: int. Number of object classes (no background class).
        bounding_box_format: str. Format of the boxes you pass and get back:
            `"xyxy"`, `"yxyx"`, `"xywh"`, `"center_xywh"` or `"center_yxhw"`,
            in pixels of each image. Defaults to `"xyxy"`.
        fpn_filters: int. Channels of the FPN and the subnets. Defaults to 256.
        num_head_convs: int. 3x3 convolutions in each subnet. Defaults to 4.
        min_level, max_level: int. Pyramid levels with anchors (stride
            `2**level`). Defaults to 3 and 7.
        num_scales: int. Anchor scales per level. Defaults to 3.
        aspect_ratios: floats. Anchor height/width ratios (2.0 is an anchor
            twice as tall as wide). Defaults to `(0.5, 1.0, 2.0)`.
        anchor_size: float. Base anchor side in units of the level's stride.
            Defaults to 4.0 (32 pixels on `P3`).
        box_variance: 4 floats. Scale of the box deltas.
        iou_threshold: float. NMS overlap threshold. Defaults to 0.5.
        confidence_threshold: float. Detections scoring less are dropped.
            Defaults to 0.05.
        max_detections: int. Detections kept per image. Defaults to 100.
        normalize_pyramid: bool or `"auto"`. Group-normalise each backbone
            feature map before the FPN (32 groups, or fewer for narrow maps),
            so that the scale of a pretrained backbone's activations does not
            set the scale of the FPN's inputs. `"auto"` (the default) decides
            by the backbone's weights when `FineTuner` builds the model: True
            for pretrained weights (a file, `"imagenet"`, a preset, your own
            model), False for random ones (`weights=None`); a head built
            without a FineTuner normalises. The decision is saved with the
            model as a plain bool.
        **kwargs: Standard `keras.layers.Layer` arguments.

    Returns:
        Float32 `(batch, num_anchors, 4 + num_classes)`: box deltas, then class logits.

    Example:
    ```python
    det = fk.FineTuner(backbone="resnet50", head=fk.DetectionHead(num_classes=3))
    det.fit(images, {"boxes": boxes, "labels": labels}, epochs=10)
    det.predict_boxes(images)   # [{"boxes": (m, 4), "scores": (m,), "labels": (m,)}, ...]
    det.evaluate(images, {"boxes": boxes, "labels": labels}, report=True)
    ```
    """

    needs = ("pyramid",)
    spatial_key = BOXES
    task_methods = ("predict_boxes",)
    cli_task = "detection"

    def __init__(
        self, num_classes, bounding_box_format="xyxy", fpn_filters=256, num_head_convs=4,
        min_level=3, max_level=7, num_scales=3, aspect_ratios=(0.5, 1.0, 2.0), anchor_size=4.0,
        box_variance=(0.1, 0.1, 0.2, 0.2), iou_threshold=0.5, confidence_threshold=0.05,
        max_detections=100, normalize_pyramid="auto", **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 1:
            raise ValueError(f"`num_classes` must be an int >= 1. Received: num_classes={num_classes!r}")
        if bounding_box_format not in BOX_FORMATS:
            raise ValueError(
                f"Unknown bounding_box_format {bounding_box_format!r}. Expected one of "
                f"{', '.join(BOX_FORMATS)} (pixel coordinates; multiply normalised boxes by the "
                f"image size). Received: bounding_box_format={bounding_box_format!r}"
            )
        if not 2 <= int(min_level) <= int(max_level):
            raise ValueError(
                f"Need 2 <= min_level <= max_level. Received: min_level={min_level}, "
                f"max_level={max_level}"
            )
        self.num_classes = int(num_classes)
        self.bounding_box_format = bounding_box_format
        self.fpn_filters, self.num_head_convs = int(fpn_filters), int(num_head_convs)
        self.anchor_options = {
            "min_level": int(min_level), "max_level": int(max_level),
            "num_scales": int(num_scales), "aspect_ratios": [float(a) for a in aspect_ratios],
            "anchor_size": float(anchor_size),
        }
        self.box_variance = [float(v) for v in box_variance]
        self.nms_options = {
            "iou_threshold": float(iou_threshold),
            "confidence_threshold": float(confidence_threshold),
            "max_detections": int(max_detections),
        }
        flags = (bool, int, np.bool_, np.integer)
        if isinstance(normalize_pyramid, flags) and normalize_pyramid in (0, 1):
            normalize_pyramid = bool(normalize_pyramid)
        elif normalize_pyramid != "auto":
            raise ValueError(
                "`normalize_pyramid` must be True, False or \"auto\" (True for pretrained "
                "weights, False for random ones). Received: "
                f"normalize_pyramid={normalize_pyramid!r}"
            )
        self.normalize_pyramid = normalize_pyramid
        self.image_size = None
        self.anchors = None
        self.tap_norms = {}

    # ------------------------------------------------------------------ model
    def adapt_backbone(self, kind):
        """Resolves `normalize_pyramid="auto"` from the backbone's weights (True unless random)."""
        if self.normalize_pyramid == "auto":
            self.normalize_pyramid = not getattr(kind, "learns_norm_stats", False)
        return kind

    def build(self, input_shape):
        FeaturePyramid = retinanet_feature_pyramid_class()
        PredictionHead = retinanet_prediction_head_class()

        pyramid = {level: tuple(shape) for level, shape in input_shape["pyramid"].items()}
        low, high = self.anchor_options["min_level"], self.anchor_options["max_level"]
        self.levels = _input_levels(pyramid, low, high)
        first = pyramid[f"P{low}"]
        self.image_size = (int(first[1]) * 2**low, int(first[2]) * 2**low)
        self.fpn = FeaturePyramid(
            min_level=low, max_level=high, use_p5=False, num_filters=self.fpn_filters,
            dtype=self.dtype_policy, name="fpn",
        )
        self.fpn.build({level: pyramid[level] for level in self.levels})
        if self.normalize_pyramid == "auto":  # built without a FineTuner: weights unknown
            self.normalize_pyramid = True
        if self.normalize_pyramid:
            for level in self.levels:
                channels = int(pyramid[level][-1])
                norm = keras.layers.GroupNormalization(
                    math.gcd(32, channels), dtype=self.dtype_policy, name=f"{level}_norm"
                )
                norm.build(pyramid[level])
                self.tap_norms[level] = norm
        per_place = self.anchor_options["num_scales"] * len(self.anchor_options["aspect_ratios"])
        common = dict(num_filters=self.fpn_filters, num_conv_layers=self.num_head_convs,
                      dtype=self.dtype_policy)
        self.box_net = PredictionHead(output_filters=per_place * 4, name="box_net", **common)
        self.class_net = PredictionHead(
            output_filters=per_place * self.num_classes, use_prior_probability=True,
            prior_probability=0.01, name="class_net", **common,
        )
        feature = (None, None, None, self.fpn_filters)
        self.box_net.build(feature)
        self.class_net.build(feature)
        self.anchors = anchor_boxes(self.image_size, **self.anchor_options)
        self._check_anchor_count(pyramid, per_place)
        self.built = True

    def _check_anchor_count(self, pyramid, per_place):
        height, width = pyramid[self.levels[-1]][1:3]
        places = sum(int(pyramid[level][1]) * int(pyramid[level][2]) for level in self.levels)
        for _ in range(int(self.levels[-1][1:]), self.anchor_options["max_level"]):
            height, width = -(-height // 2), -(-width // 2)  # stride-2 "same" convolutions
            places += height * width
        if places * per_place != len(self.anchors):
            raise ValueError(
                f"DetectionHead: the feature maps of a {self.image_size[0]}x{self.image_size[1]} "
                f"input do not line up with the anchors of levels P{self.anchor_options['min_level']}"
                f"..P{self.anchor_options['max_level']}. Use an input_shape whose height and "
                f"width are multiples of {2 ** self.anchor_options['max_level']}."
            )

    def call(self, outputs, training=None):
        taps = {level: outputs["pyramid"][level] for level in self.levels}
        taps = {level: self.tap_norms[level](x) if self.tap_norms else x for level, x in taps.items()}
        features = self.fpn(taps)
        boxes, classes = [], []
        for feature in features.values():
            places = int(feature.shape[1]) * int(feature.shape[2])
            boxes.append(ops.reshape(self.box_net(feature), (-1, places * self._per_place(), 4)))
            classes.append(ops.reshape(
                self.class_net(feature), (-1, places * self._per_place(), self.num_classes)
            ))
        merged = ops.concatenate(
            [ops.concatenate(boxes, axis=1), ops.concatenate(classes, axis=1)], axis=-1
        )
        return ops.cast(merged, "float32")

    def _per_place(self):
        return self.anchor_options["num_scales"] * len(self.anchor_options["aspect_ratios"])

    def compute_output_shape(self, input_shape):
        batch = next(iter(input_shape["pyramid"].values()))[0]
        return (batch, None if self.anchors is None else len(self.anchors), 4 + self.num_classes)

    # ------------------------------------------------------------------- task
    def default_loss(self, label_smoothing=0.0):
        if label_smoothing:
            raise ValueError("`label_smoothing` is not supported by DetectionHead.")
        return DetectionLoss(
            self.num_classes, self.image_size, self.anchor_options, box_variance=self.box_variance
        )

    def check_learnable(self, targets, sizes):
        """Warns with counts about boxes that no anchor overlaps well at the model's input size.

        The loss trains a box through the anchors it overlaps with IoU >= 0.5
        (keras-hub's `RetinaNetLabelEncoder`); a box smaller than the smallest
        anchors (`anchor_size * 2 ** min_level` pixels) or of another shape
        has none, and trains only through the one anchor it is forced onto,
        whose box deltas must then stretch far: such boxes are learned poorly.
        The warning says whether the missed boxes are too small for the
        anchors or more elongated than their `aspect_ratios` (height/width).
        """
        if getattr(self, "anchors", None) is None:
            return
        scaled = []
        for target, (height, width) in zip(targets, sizes):
            factor = np.array([self.image_size[1] / width, self.image_size[0] / height] * 2)
            scaled.append(np.asarray(target["boxes"], "float32").reshape(-1, 4) * factor)
        boxes = np.concatenate(scaled) if scaled else np.zeros((0, 4), "float32")
        missed = best_anchor_iou(boxes, self.anchors) < POSITIVE_IOU
        if not missed.any():
            return
        extent = np.maximum(boxes[:, 2:] - boxes[:, :2], 1e-6)  # (width, height)
        sides = np.sqrt(np.prod(extent[missed], axis=1))
        shapes = extent[:, 1] / extent[:, 0]  # height / width, as aspect_ratios count
        smallest = self.anchor_options["anchor_size"] * 2 ** self.anchor_options["min_level"]
        ratios = self.anchor_options["aspect_ratios"]
        shape = float(np.median(shapes[missed]))
        facts = (f"their median side is {np.median(sides):.0f} px; the smallest anchors are "
                 f"{smallest:g} px")
        advice = []
        if not min(ratios) / 1.5 <= shape <= max(ratios) * 1.5:
            usual = float(np.median(shapes))
            suggested = ", ".join(f"{r:.2g}" for r in (usual / 2, usual, usual * 2))
            facts += (f"; their median height/width is {shape:.2g}, the anchors' "
                      f"{min(ratios):g} to {max(ratios):g}")
            advice.append(
                "Pass anchor shapes around your boxes' own, e.g. DetectionHead(aspect_ratios="
                f"({suggested})) for boxes whose median height/width is {usual:.2g}"
            )
        if not advice or np.median(sides) < smallest:
            advice.append(
                "Pass a larger input_shape, or a smaller DetectionHead(anchor_size=...) (e.g. "
                f"anchor_size=2 for {2 * 2 ** self.anchor_options['min_level']:g} px anchors)"
            )
        warn_user(
            f"{int(missed.sum())} of {len(boxes)} boxes overlap no anchor with IoU >= "
            f"{POSITIVE_IOU} at the model's {self.image_size[0]}x{self.image_size[1]} input "
            f"({facts}): each trains only through the one anchor it is forced onto, and is "
            f"learned poorly. {'. '.join(advice)}."
        )

    def read_data(self, x, y):
        """COCO json, Pascal VOC and YOLO folders, or `{"boxes", "labels"}` lists (see the readers)."""
        from finetunekit.families.detection.readers import read_detection_data

        return read_detection_data(x, y)

    def encode_targets(self, y, class_names=None):
        """Checks boxes and class labels and converts boxes to xyxy pixels.

        Args:
            y: a list of per-image dicts `{"boxes": (k, 4), "labels": (k,)}`,
                or one dict of two per-image lists.
            class_names: list of str or None. Known class names.

        Returns:
            `(targets, class_names)`: per-image `{"boxes", "labels"}` (xyxy
            float32, int32 ids) and the class names (learned from string labels).
        """
        return encode_box_targets(
            y, class_names, self.num_classes, self.bounding_box_format
        )

    def decode(self, outputs, class_names=None, context=None):
        """Per image `{"boxes", "scores", "labels"}` after NMS.

        Boxes are in `bounding_box_format`, in pixels of each input image
        (with a `SpatialContext`; of the model input otherwise); labels are
        class names when known, else ids.
        """
        sizes = None if context is None else context.sizes
        results = []
        for boxes, scores, labels in self.detections(outputs, sizes):
            names = [class_names[i] for i in labels] if class_names else labels
            results.append({
                "boxes": to_user_boxes(boxes, self.bounding_box_format),
                "scores": scores,
                "labels": np.asarray(names),
            })
        return results

    def detections(self, outputs, sizes=None):
        """Per image `(boxes, scores, class ids)` after NMS, xyxy in each image's pixels, clipped.

        The one decoding path of `decode` (`predict_boxes`) and `report`.

        Args:
            outputs: `(n, num_anchors, 4 + num_classes)` model outputs.
            sizes: one `(height, width)` per image, or None for the model's input size.
        """
        return detections(
            outputs, self.anchors, self.box_variance, self.nms_options, self.image_size, sizes
        )

    def serving_outputs(self, tuner, outputs, input_size=None):
        """Detections after NMS in the graph, what an exported model serves.

        Args:
            tuner: the `FineTuner` (unused).
            outputs: `(b, num_anchors, 4 + num_classes)` model outputs.
            input_size: int32 tensor `(height, width)` of the raw images, or
                None (boxes then stay in pixels of the model input).

        Returns:
            A dict: `"boxes"` `(b, max_detections, 4)` in `bounding_box_format`
            and the input's pixels, `"scores"` and `"labels"` (class ids)
            `(b, max_detections)`, `"num_detections"` `(b,)`; rows past
            `num_detections` are padding (-1).
        """
        return serving_detections(
            outputs, self.anchors, self.box_variance, self.nms_options, self.image_size,
            input_size, self.bounding_box_format,
        )

    def report(self, outputs, targets, class_names=None):
        """COCO mAP@[.5:.95], mAP@.5, mAP@.75 and per-class AP (pycocotools)."""
        from finetunekit.families.detection.report import coco_report

        found = self.detections(outputs)  # targets are at the model's input size
        return coco_report(found, np.asarray(targets), class_names, self.num_classes)

    def predict_boxes(self, tuner, x, batch_size=None, **kwargs):
        """Detections per image: `ft.predict_boxes(images)`.

        Args:
            tuner: the FineTuner.
            x: images in any form `predict` accepts (arrays, paths, a file).
            batch_size: int. Defaults to 32.

        Returns:
            A list with one dict per image: `"boxes"` `(m, 4)` in
            `bounding_box_format` and the image's own pixels, `"scores"`
            `(m,)` and `"labels"` `(m,)` (class names when known).
        """
        return tuner.predict_labels(x, batch_size=batch_size, **kwargs)

    def get_config(self):
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "bounding_box_format": self.bounding_box_format,
            "fpn_filters": self.fpn_filters,
            "num_head_convs": self.num_head_convs,
            **self.anchor_options,
            "box_variance": self.box_variance,
            **self.nms_options,
            "normalize_pyramid": self.normalize_pyramid,
        }

    @classmethod
    def from_config(cls, config):
        # A config written before the option existed had taps fed to the FPN as they are.
        return super().from_config({"normalize_pyramid": False, **config})


def _input_levels(pyramid, low, high):
    """The backbone levels the FPN reads: `P{low}` up to the deepest one present (<= high)."""
    present = sorted(int(k[1:]) for k in pyramid)
    if low not in present:
        shown = ", ".join(f"P{p}" for p in present) or "none"
        raise ValueError(
            f"DetectionHead needs the stride-{2 ** low} feature map P{low} of the backbone; its "
            f"pyramid levels: {shown} (a backbone must downsample its input at least "
            f"{2 ** low} times, in stages). Use a deeper backbone, or a lower min_level."
        )
    levels = [level for level in present if low <= level <= high]
    return [f"P{level}" for level in levels]

