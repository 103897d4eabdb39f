"""`OrdinalHead`: ordered levels 0..K-1 as K-1 cumulative yes/no outputs (P(level > k))."""

import keras
import numpy as np

import finetunekit as fk


@keras.saving.register_keras_serializable(package="finetunekit_tests")
class OrdinalHead(fk.heads.Head):
    """Ordered levels 0..K-1 predicted as K-1 cumulative sigmoid outputs.

    Args:
        num_levels: int. Number of ordered levels K (>= 2).
        **kwargs: Standard `keras.layers.Layer` arguments.

    Example:
    ```python
    ft = fk.FineTuner(backbone="resnet50", head=OrdinalHead(4))
    ft.fit(images, levels, epochs=5)
    ft.predict_labels(images)   # [0, 3, 2, ...]
    ```
    """

    def __init__(self, num_levels, **kwargs):
        super().__init__(**kwargs)
        self.num_levels = int(num_levels)
        self.dense = keras.layers.Dense(self.num_levels - 1, activation="sigmoid", dtype="float32")

    def build(self, input_shape):
        self.dense.build((None, input_shape["features"][-1]))

    def call(self, outputs, training=None):
        return self.dense(fk.heads.pool_features(outputs["features"], "avg"))

    def compute_output_shape(self, input_shape):
        return (input_shape["features"][0], self.num_levels - 1)

    def default_loss(self, label_smoothing=0.0):
        return keras.losses.BinaryCrossentropy(label_smoothing=label_smoothing)

    def encode_targets(self, y, class_names=None):
        levels = np.asarray(y).astype("int64")
        if levels.min() < 0 or levels.max() >= self.num_levels:
            raise ValueError(f"Levels must be in 0..{self.num_levels - 1}. Received: {levels.min()}..{levels.max()}")
        ranks = np.arange(self.num_levels - 1)
        return (levels[:, None] > ranks[None, :]).astype("float32"), class_names

    def decode(self, outputs, class_names=None, context=None):
        return (np.asarray(outputs) > 0.5).sum(axis=-1).tolist()

    def get_config(self):
        return {**super().get_config(), "num_levels": self.num_levels}
