"""Decoding of `fk.DetectionHead` outputs: deltas to boxes, NMS, boxes in each image's pixels.

`detections` is the one decoding path of `predict_boxes` and of
`evaluate(report=True)`: Keras' `bounding_boxes.decode_deltas_to_boxes`,
keras-hub's `NonMaxSuppression`, then boxes scaled to each image's size and
clipped to it. `serving_detections` is the same in graph ops, for exported
models.
"""

import keras
import numpy as np
from keras import ops

from finetunekit.core._keras_compat import non_max_suppression
from finetunekit.families.detection.anchors import ENCODING


def detections(outputs, anchors, box_variance, nms_options, model_size, sizes=None):
    """Boxes, scores and class ids after NMS, in xyxy pixels of each image, clipped to it.

    What `predict_boxes` returns (with each input's size) and what
    `evaluate(report=True)` scores (at the model's input size, where its
    targets are): one path, so that the two agree.

    Args:
        outputs: `(n, num_anchors, 4 + num_classes)` head outputs.
        anchors: `(num_anchors, 4)` xyxy anchors.
        box_variance: 4 floats.
        nms_options: `iou_threshold`, `confidence_threshold`, `max_detections`.
        model_size: `(height, width)` of the model input.
        sizes: one `(height, width)` per image, or None for the model's input size.

    Returns:
        A list of `(boxes (m, 4), scores (m,), labels (m,))` numpy triples.
    """
    found = _suppressed(outputs, anchors, box_variance, nms_options)
    result = []
    for index, (boxes, scores, labels) in enumerate(found):
        size = model_size if sizes is None else tuple(sizes[index])
        result.append((scale_to_image(boxes, model_size, size), scores, labels))
    return result


def scale_to_image(boxes, model_size, size):
    """xyxy boxes in pixels of the model input -> pixels of a `size` image, clipped to it."""
    scale_y = size[0] / float(model_size[0])
    scale_x = size[1] / float(model_size[1])
    boxes = np.asarray(boxes, "float32") * np.array([scale_x, scale_y, scale_x, scale_y], "float32")
    limit = np.array([size[1], size[0], size[1], size[0]], "float32")
    return np.clip(boxes, 0.0, limit)


def _suppressed(outputs, anchors, box_variance, nms_options):
    """keras-hub's NMS on decoded boxes: per image `(boxes, scores, labels)` in model pixels."""
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
    """`detections` in graph ops: NMS, boxes scaled to the input size, padded rows.

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
