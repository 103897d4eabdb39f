"""Adding a task without touching FineTuner: an ordinal-regression head through the public protocol."""

import keras
import numpy as np

import finetunekit as fk
from tests.conftest import tiny_cnn
from tests.harness import check_task


@keras.saving.register_keras_serializable(package="finetunekit_tests")
class OrdinalHead(fk.heads.Head):
    """Ordered levels 0..K-1 as K-1 cumulative yes/no outputs (P(level > k))."""

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
            raise ValueError(f"Levels must be in 0..{self.num_levels - 1}.")
        ranks = np.arange(self.num_levels - 1)
        return (levels[:, None] > ranks[None, :]).astype("float32"), class_names

    def decode(self, outputs, class_names=None, context=None):
        return (np.asarray(outputs) > 0.5).sum(axis=-1).tolist()

    def get_config(self):
        return {**super().get_config(), "num_levels": self.num_levels}


def test_ordinal_head_fits_saves_and_reloads(tmp_path):
    rng = np.random.default_rng(0)
    levels = np.repeat(np.arange(4), 8)
    # Brighter images are higher levels: a learnable ordinal signal.
    x = (levels[:, None, None, None] * 60 + rng.integers(0, 20, (32, 16, 16, 3))).astype("uint8")
    ft = fk.FineTuner(tiny_cnn(), OrdinalHead(4), preprocessing="zero_one", unfreeze="all")
    encoded, _ = ft.head.encode_targets(levels)
    assert encoded[5].tolist() == [0, 0, 0] and encoded[-1].tolist() == [1, 1, 1]
    check_task(ft, x, levels, tmp_path)
    ft.compile(learning_rate=3e-2)
    before = np.mean(np.abs(np.asarray(ft.predict_labels(x)) - levels))
    ft.fit(x, levels, epochs=25, batch_size=8, verbose=0)
    after = np.mean(np.abs(np.asarray(ft.predict_labels(x)) - levels))
    assert after < before and after <= 0.5, (before, after)
