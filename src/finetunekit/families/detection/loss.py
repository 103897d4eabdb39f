"""Anchors, the RetinaNet loss and box decoding of `fk.DetectionHead`, from keras-hub's pieces.

The detector predicts, for every anchor of every pyramid level, 4 box deltas
(`center_xywh` offsets from the anchor, divided by `box_variance`) and one
logit per class. Anchors come from `keras_hub.layers.AnchorGenerator`;
training targets from keras-hub's `RetinaNetLabelEncoder` (which matches
ground-truth boxes to anchors with `keras_hub.layers.BoxMatcher`); the loss is
Keras' binary focal cross-entropy plus a Huber box loss, normalised by the
number of matched anchors as in RetinaNet; predictions are decoded with
`keras.utils.bounding_boxes.decode_deltas_to_boxes` and
`keras_hub.layers.NonMaxSuppression`.
"""

import keras
import numpy as np
from keras import ops

from finetunekit.core._keras_compat import non_max_suppression, retinanet_label_encoder_class

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


@keras.saving.register_keras_serializable(package="finetunekit")
class DetectionLoss(keras.losses.Loss):
    """RetinaNet loss on padded `(b, k, 5)` box targets: focal classification + Huber boxes.

    Ground-truth rows `x1, y1, x2, y2, class` (pixel coordinates at the model's
    input size, padded with class -1) are matched to the anchors in the graph
    by keras-hub's `RetinaNetLabelEncoder`: IoU >= `positive_threshold` is a
    positive, < `negative_threshold` background, in between ignored; every
    ground-truth box also claims its best anchor, so that boxes smaller than
    any anchor still train the detector.

    Args:
        num_classes: int. Number of object classes.
        image_size: `(height, width)` of the model input.
        anchor_options: dict. `min_level`, `max_level`, `num_scales`,
            `aspect_ratios`, `anchor_size`.
        box_variance: 4 floats. Scale of the encoded box deltas.
        positive_threshold, negative_threshold: float. IoU thresholds.
        alpha, gamma: float. Focal loss parameters.
        box_loss_weight: float. Weight of the box loss.
        **kwargs: Standard `keras.losses.Loss` arguments.

    Example:
    ```python
    loss = fk.heads.DetectionLoss(3, (128, 128), fk.DetectionHead(3).anchor_options)
    ```
    """

    def __init__(
        self, num_classes, image_size, anchor_options, box_variance=(0.1, 0.1, 0.2, 0.2),
        positive_threshold=0.5, negative_threshold=0.4, alpha=0.25, gamma=2.0,
        box_loss_weight=1.0, name="detection_loss", **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.num_classes = int(num_classes)
        self.image_size = tuple(int(s) for s in image_size)
        self.anchor_options = dict(anchor_options)
        self.box_variance = [float(v) for v in box_variance]
        self.positive_threshold = float(positive_threshold)
        self.negative_threshold = float(negative_threshold)
        self.alpha, self.gamma = float(alpha), float(gamma)
        self.box_loss_weight = float(box_loss_weight)
        self.first_anchor = anchor_boxes(self.image_size, **self.anchor_options)[0]
        self.encoder = retinanet_label_encoder_class()(
            anchor_generator(**self.anchor_options), bounding_box_format="xyxy",
            encoding_format=ENCODING, positive_threshold=self.positive_threshold,
            negative_threshold=self.negative_threshold, box_variance=self.box_variance,
            box_matcher_force_match_for_each_col=True,
        )

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "float32")
        y_pred = ops.cast(y_pred, "float32")
        box_targets, class_targets = self.match(y_true)
        positive = ops.cast(class_targets > -1.0, "float32")
        counted = ops.cast(class_targets > -2.0, "float32")
        one_hot = ops.one_hot(ops.cast(ops.maximum(class_targets, 0.0), "int32"), self.num_classes)
        one_hot = one_hot * positive[..., None]
        focal = keras.losses.binary_focal_crossentropy(
            one_hot, y_pred[..., 4:], apply_class_balancing=True, alpha=self.alpha,
            gamma=self.gamma, from_logits=True,
        ) * self.num_classes
        huber = keras.losses.huber(box_targets, y_pred[..., :4]) * 4.0
        per_image = ops.sum(focal * counted, axis=-1) + self.box_loss_weight * ops.sum(
            huber * positive, axis=-1
        )
        batch = ops.cast(ops.shape(y_true)[0], "float32")
        return per_image * batch / ops.maximum(ops.sum(positive), 1.0)

    def match(self, y_true):
        """Per-anchor encoded box targets and class ids (-1 background, -2 ignored).

        Args:
            y_true: `(b, k, 5)` float rows `x1, y1, x2, y2, class`, padded with class -1.

        Returns:
            `(box_targets (b, A, 4), class_targets (b, A))`.
        """
        y_true = ops.cast(y_true, "float32")
        # keras-hub's forced matching sends the first anchor to an out-of-range column when
        # no box claims it; a background row that is exactly that anchor claims it first.
        first = np.append(self.first_anchor, -1.0).astype("float32").reshape(1, 1, 5)
        first = ops.tile(ops.convert_to_tensor(first), (ops.shape(y_true)[0], 1, 1))
        y_true = ops.concatenate([first, y_true], axis=1)
        image = ops.zeros((1, *self.image_size, 1))
        return self.encoder(image, y_true[..., :4], y_true[..., 4])

    def get_config(self):
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "image_size": list(self.image_size),
            "anchor_options": self.anchor_options,
            "box_variance": self.box_variance,
            "positive_threshold": self.positive_threshold,
            "negative_threshold": self.negative_threshold,
            "alpha": self.alpha,
            "gamma": self.gamma,
            "box_loss_weight": self.box_loss_weight,
        }


def decode_detections(outputs, anchors, box_variance, nms_options):
    """Boxes, scores and class ids after NMS, in xyxy pixels of the model input.

    Args:
        outputs: `(n, num_anchors, 4 + num_classes)` head outputs.
        anchors: `(num_anchors, 4)` xyxy anchors.
        box_variance: 4 floats.
        nms_options: `iou_threshold`, `confidence_threshold`, `max_detections`.

    Returns:
        A list of `(boxes (m, 4), scores (m,), labels (m,))` numpy triples.
    """
    from keras_hub.layers import NonMaxSuppression

    outputs = np.asarray(outputs, "float32")
    if not len(outputs):
        return []
    boxes = keras.utils.bounding_boxes.decode_deltas_to_boxes(
        anchors=ops.convert_to_tensor(anchors), boxes_delta=ops.convert_to_tensor(outputs[..., :4]),
        anchor_format="xyxy", box_format="xyxy", encoded_format=ENCODING, variance=box_variance,
    )
    nms = NonMaxSuppression(bounding_box_format="xyxy", from_logits=True, **nms_options)
    found = nms(boxes, ops.convert_to_tensor(outputs[..., 4:]))
    found = {key: ops.convert_to_numpy(value) for key, value in found.items()}
    result = []
    for index in range(len(outputs)):
        count = int(found["num_detections"][index])
        result.append((
            found["boxes"][index, :count].astype("float32"),
            found["confidence"][index, :count].astype("float32"),
            found["labels"][index, :count].astype("int64"),
        ))
    return result


def serving_detections(outputs, anchors, box_variance, nms_options, model_size, input_size=None,
                       box_format="xyxy"):
    """`decode_detections` in graph ops: NMS, boxes scaled to the input size, padded rows.

    Runs keras-hub's `non_max_suppression` (the algorithm of its
    `NonMaxSuppression` layer) one image at a time, as the layer needs a
    static batch size, and picks labels without `ops.argmax` on floats
    (whose TensorFlow kernel has no TFLite builtin).

    Args:
        outputs: `(b, num_anchors, 4 + num_classes)` head outputs (a tensor).
        anchors: `(num_anchors, 4)` xyxy anchors.
        box_variance: 4 floats.
        nms_options: `iou_threshold`, `confidence_threshold`, `max_detections`.
        model_size: `(height, width)` of the model input.
        input_size: `(height, width)` tensor of the raw images, or None.
        box_format: the format of the returned boxes.

    Returns:
        A dict of `"boxes"`, `"scores"`, `"labels"` (int32) and
        `"num_detections"`; rows past `num_detections` hold -1.
    """
    outputs = ops.cast(outputs, "float32")
    boxes = keras.utils.bounding_boxes.decode_deltas_to_boxes(
        anchors=ops.convert_to_tensor(anchors), boxes_delta=outputs[..., :4],
        anchor_format="xyxy", box_format="xyxy", encoded_format=ENCODING, variance=box_variance,
    )
    found = ops.map(lambda pair: _nms_one_image(*pair, nms_options), (boxes, outputs[..., 4:]))
    size = ops.cast(ops.convert_to_tensor(model_size if input_size is None else input_size), "float32")
    height, width = size[0], size[1]
    scale = ops.stack([width / model_size[1], height / model_size[0]] * 2)
    limit = ops.stack([width, height] * 2)
    boxes = ops.minimum(ops.maximum(found["boxes"] * scale, 0.0), limit)
    if box_format != "xyxy":
        boxes = keras.utils.bounding_boxes.convert_format(boxes, source="xyxy", target=box_format)
    count = ops.cast(found["num_detections"], "int32")
    valid = ops.arange(nms_options["max_detections"])[None, :] < count[:, None]
    return {
        "boxes": ops.where(valid[..., None], boxes, -1.0),
        "scores": ops.where(valid, found["scores"], -1.0),
        "labels": ops.where(valid, ops.cast(found["labels"], "int32"), -1),
        "num_detections": count,
    }


def _nms_one_image(boxes, logits, nms_options):
    """keras-hub's NMS on one image's xyxy boxes and class logits (as its layer does)."""
    probabilities = ops.sigmoid(logits)
    scores = ops.max(probabilities, axis=-1)
    corners = keras.utils.bounding_boxes.convert_format(boxes[None], source="xyxy", target="yxyx")
    index, count = non_max_suppression(
        corners, scores[None], max_output_size=nms_options["max_detections"],
        iou_threshold=nms_options["iou_threshold"],
        score_threshold=nms_options["confidence_threshold"],
    )
    picked = ops.take(probabilities, index[0], axis=0)
    best = ops.cast(picked >= ops.max(picked, axis=-1, keepdims=True), "int32")
    return {
        "boxes": ops.take(boxes, index[0], axis=0),
        "scores": ops.take(scores, index[0], axis=0),
        "labels": ops.cast(ops.argmax(best, axis=-1), "float32"),  # the first best class
        "num_detections": ops.cast(ops.reshape(count, ()), "float32"),
    }
