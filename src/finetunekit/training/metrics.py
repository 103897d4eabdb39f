"""Training metrics shared by the generative heads: next-token accuracy over the target mask."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="finetunekit")
class TokenAccuracy(keras.metrics.Metric):
    """Fraction of target tokens whose most likely prediction is right, over the target mask only.

    A position counts when its sample weight is nonzero (the per-token loss
    mask the generative pipelines pass: 0 on padding and prompt tokens) and
    its label is not negative (`IGNORE_INDEX`, -100, marks positions
    without a label). Every counted position weighs the same. Keras' `SparseCategoricalAccuracy` given as a plain
    metric never sees the sample weights and counts padding and prompts.

    Args:
        name: str. Defaults to `"token_accuracy"`.
        **kwargs: Standard `keras.metrics.Metric` arguments.

    Example:
    ```python
    metric = TokenAccuracy()
    metric.update_state(labels, logits, sample_weight=loss_mask)
    float(metric.result())
    ```
    """

    def __init__(self, name="token_accuracy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.correct = self.add_variable(shape=(), initializer="zeros", name="correct")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        labels = ops.cast(y_true, "int32")
        if len(labels.shape) == len(y_pred.shape):  # (..., 1) labels
            labels = ops.squeeze(labels, axis=-1)
        counted = labels >= 0  # IGNORE_INDEX and other negative labels carry no target
        if sample_weight is not None:
            weight = ops.cast(sample_weight, "float32")
            while len(weight.shape) < len(labels.shape):  # per-example weights
                weight = ops.expand_dims(weight, -1)
            counted = ops.logical_and(counted, ops.broadcast_to(weight, ops.shape(labels)) != 0)
        predicted = ops.cast(ops.argmax(y_pred, axis=-1), "int32")
        right = ops.logical_and(counted, ops.equal(predicted, labels))
        self.correct.assign_add(ops.cast(ops.sum(ops.cast(right, "float32")), self.correct.dtype))
        self.count.assign_add(ops.cast(ops.sum(ops.cast(counted, "float32")), self.count.dtype))

    def result(self):
        return ops.divide_no_nan(self.correct, self.count)

    def reset_state(self):
        self.correct.assign(0.0)
        self.count.assign(0.0)
