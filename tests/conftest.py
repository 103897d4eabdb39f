import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


def _lighter_tensorflow():
    """Test-run speed on 2 cores: each of the two pytest workers runs TensorFlow ops on one
    thread, and Grappler's graph rewrites (which do not change results) are skipped; the
    tiny test graphs are traced far more often than they run. Measured on 69 tests of
    test_text, test_heads and test_caching: 52 s instead of 65 s. finetunekit is imported
    first so that TensorFlow starts with the library's own settings (oneDNN)."""
    import finetunekit  # noqa: F401, I001 (before TensorFlow: it sets oneDNN)
    import tensorflow as tf

    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    tf.config.threading.set_intra_op_parallelism_threads(1)


_lighter_tensorflow()


@pytest.fixture(autouse=True)
def _seed_and_clear():
    import keras

    keras.utils.set_random_seed(0)
    yield
    keras.backend.clear_session()


@pytest.fixture
def fit_kwargs(monkeypatch):
    """Records the keyword arguments of each `keras.Model.fit` call (the last one wins)."""
    import keras

    seen = {}
    real_fit = keras.Model.fit

    def spy(self, *args, **kwargs):
        seen.update(kwargs)
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", spy)
    return seen


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def tiny_cnn(input_shape=(16, 16, 3), name="tiny_cnn"):
    """A small functional CNN with BatchNorm, used as a user backbone."""
    import keras

    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(4, 3, padding="same", name="block1_conv")(inputs)
    x = keras.layers.BatchNormalization(name="block1_bn")(x)
    x = keras.layers.ReLU(name="block1_relu")(x)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="block2_conv")(x)
    x = keras.layers.BatchNormalization(name="block2_bn")(x)
    x = keras.layers.ReLU(name="block2_relu")(x)
    return keras.Model(inputs, x, name=name)


def tiny_tuner(head=None, num_classes=2, **kwargs):
    """A FineTuner on `tiny_cnn()` with 0-1 input scaling.

    The head defaults to `ClassificationHead(num_classes)`; other keyword
    arguments go to `FineTuner`.
    """
    import finetunekit as fk

    head = head or fk.ClassificationHead(num_classes)
    return fk.FineTuner(tiny_cnn(), head=head, preprocessing="zero_one", **kwargs)


def write_images(root, counts, size=(20, 20), seed=0):
    """Writes PNG/JPEG images into class folders; returns the folder."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for cls, n in counts.items():
        os.makedirs(os.path.join(root, cls), exist_ok=True)
        for i in range(n):
            array = rng.integers(0, 255, size + (3,), dtype=np.uint8)
            ext = "png" if i % 2 else "jpg"
            Image.fromarray(array).save(os.path.join(root, cls, f"{i}.{ext}"))
    return root
