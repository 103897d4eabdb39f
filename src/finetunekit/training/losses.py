"""Losses for fine-tuning: label smoothing on sparse (integer) class labels."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="finetunekit")
class SparseCategoricalCrossentropyWithSmoothing(keras.losses.Loss):
    """Categorical cross-entropy on integer labels, with label smoothing.

    Keras' `SparseCategoricalCrossentropy` has no `label_smoothing`; this loss
    one-hot encodes the integer labels and smooths them
    (`y * (1 - s) + s / num_classes`), so targets and accuracy metrics stay
    sparse (`SparseCategoricalAccuracy` keeps working).

    Args:
        label_smoothing: float in [0, 1). Defaults to `0.1`.
        from_logits: bool. Whether predictions are logits. Defaults to `False`.
        **kwargs: Standard `keras.losses.Loss` arguments (`reduction`, `name`).

    Example:
    ```python
    loss = fk.losses.SparseCategoricalCrossentropyWithSmoothing(label_smoothing=0.1)
    loss([0, 2], [[0.8, 0.1, 0.1], [0.1, 0.1, 0.8]])
    ```
    """

    def __init__(
        self,
        label_smoothing=0.1,
        from_logits=False,
        name="sparse_categorical_crossentropy_with_smoothing",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        if not 0.0 <= float(label_smoothing) < 1.0:
            raise ValueError(
                f"`label_smoothing` must be in [0, 1). Received: label_smoothing={label_smoothing}"
            )
        self.label_smoothing = float(label_smoothing)
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        num_classes = y_pred.shape[-1]
        y_true = ops.cast(y_true, "int32")
        if len(y_true.shape) == len(y_pred.shape):
            y_true = ops.squeeze(y_true, axis=-1)
        one_hot = ops.one_hot(y_true, num_classes, dtype=y_pred.dtype)
        return keras.losses.categorical_crossentropy(
            one_hot,
            y_pred,
            from_logits=self.from_logits,
            label_smoothing=self.label_smoothing,
        )

    def get_config(self):
        config = super().get_config()
        config.update({"label_smoothing": self.label_smoothing, "from_logits": self.from_logits})
        return config
