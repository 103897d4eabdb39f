"""Backbones from random weights learn their BatchNorm statistics (issue: loss stuck at 0.693)."""

import keras
import numpy as np

import finetunekit as fk
from finetunekit.core.data.pipeline import Batches
from finetunekit.training.norm_stats import recalibrate_norm_stats, trainable_norm_layers


def two_colours(n=32, size=32, seed=0):
    """Red-ish images (class 0) and blue-ish ones (class 1), easily told apart."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.integers(0, 120, (n, size, size, 3)).astype("uint8")
    x[y == 0, :, :, 0] += 120
    x[y == 1, :, :, 2] += 120
    return x, y


def test_recalibration_gives_the_exact_statistics_of_the_batches():
    inputs = keras.Input((3,))
    norm = keras.layers.BatchNormalization(momentum=0.999)
    model = keras.Model(inputs, norm(inputs))
    x = np.random.default_rng(0).normal(5.0, 2.0, (64, 3)).astype("float32")
    assert recalibrate_norm_stats(model, Batches(x), batch_size=16) == 4
    batches = x.reshape(4, 16, 3)
    np.testing.assert_allclose(np.asarray(norm.moving_mean), batches.mean(axis=1).mean(0), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(norm.moving_variance), batches.var(axis=1).mean(0), rtol=1e-4)
    assert norm.momentum == 0.999  # put back
    norm.trainable = False
    assert recalibrate_norm_stats(model, Batches(x)) == 0  # frozen statistics are kept


def test_random_weights_learn_their_statistics_and_pretrained_ones_keep_theirs():
    x, y = two_colours()
    ft = fk.FineTuner("MobileNet", head=fk.ClassificationHead(2), weights=None,
                      input_shape=(32, 32, 3), unfreeze="all")
    assert ft.backbone_kind.learns_norm_stats and trainable_norm_layers(ft.backbone)
    frozen = fk.FineTuner("MobileNet", head=fk.ClassificationHead(2), weights=None,
                          input_shape=(32, 32, 3))  # unfreeze=0: nothing of the backbone trains
    assert not trainable_norm_layers(frozen.backbone)
    ft.compile(learning_rate=1e-3)
    history = ft.fit(x, y, epochs=6, batch_size=8, verbose=0)
    assert history.history["loss"][-1] < 0.6  # it learns (it stayed at 0.693 with frozen BN)
    accuracy = np.mean(np.argmax(ft.predict(x, verbose=0), axis=-1) == y)
    assert accuracy >= 0.9, accuracy  # inference mode agrees with what training learned
