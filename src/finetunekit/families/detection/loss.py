"""The RetinaNet loss of `fk.DetectionHead`, from keras-hub's pieces.

Training targets come from keras-hub's `RetinaNetLabelEncoder` (which matches
ground-truth boxes to the anchors of `anchors.py` with
`keras_hub.layers.BoxMatcher`); the loss is Keras' binary focal
cross-entropy plus a Huber box loss, normalised by the number of matched
anchors as in RetinaNet. Decoding lives in `decode.py`.
"""

import keras
import numpy as np
from keras import ops

from finetunekit.core._keras_compat import retinanet_label_encoder_class
from finetunekit.families.detection.anchors import ENCODING, anchor_boxes, anchor_generator


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
