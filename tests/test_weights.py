import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import finetunekit as fk
from tests.conftest import tiny_cnn


def _checksum(model):
    return float(sum(np.abs(w).sum() for w in model.get_weights()))


def test_local_weights_h5_are_loaded(tmp_path):
    source = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = str(tmp_path / "mnv2.weights.h5")
    source.save_weights(path)
    ft = fk.FineTuner("mobilenetv2", fk.ClassificationHead(2), weights=path, input_shape=(32, 32, 3))
    for a, b in zip(ft.backbone.get_weights(), source.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_local_weights_from_keras_file(tmp_path):
    donor = fk.FineTuner(tiny_cnn(), fk.ClassificationHead(2), unfreeze="all")
    path = str(tmp_path / "donor.keras")
    donor.save(path)
    ft = fk.FineTuner(tiny_cnn(name="fresh"), fk.ClassificationHead(2), weights=path)
    for a, b in zip(ft.backbone.get_weights(), donor.backbone.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_missing_weights_file_is_a_clear_error(tmp_path):
    missing = str(tmp_path / "nope.weights.h5")
    with pytest.raises(FileNotFoundError, match="Weights file not found: .*nope.weights.h5"):
        fk.FineTuner("mobilenetv2", fk.ClassificationHead(2), weights=missing, input_shape=(32, 32, 3))


def test_weights_of_wrong_shape_are_a_clear_error(tmp_path):
    other = keras.applications.MobileNetV2(
        include_top=False, weights=None, input_shape=(32, 32, 3), alpha=0.5
    )
    path = str(tmp_path / "half.weights.h5")
    other.save_weights(path)
    with pytest.raises(ValueError, match="do not fit the backbone"):
        fk.FineTuner("mobilenetv2", fk.ClassificationHead(2), weights=path, input_shape=(32, 32, 3))
    keras_path = str(tmp_path / "other.keras")
    fk.FineTuner(tiny_cnn(), fk.ClassificationHead(2)).save(keras_path)
    with pytest.raises(ValueError, match="does not fit the backbone"):
        fk.FineTuner("mobilenetv2", fk.ClassificationHead(2), weights=keras_path, input_shape=(32, 32, 3))


def test_imagenet_weights_go_through_keras_cache_offline(tmp_path):
    """weights="imagenet" uses Keras' own download-and-cache; a pre-filled cache needs no network."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    source = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(96, 96, 3))
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    name = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96_no_top.h5"
    with h5py.File(models_dir / name, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, source)
    script = textwrap.dedent(
        """
        import numpy as np, finetunekit as fk
        ft = fk.FineTuner("MobileNetV2", fk.ClassificationHead(2), weights="imagenet",
                          input_shape=(96, 96, 3))
        print(repr(float(sum(np.abs(w).sum() for w in ft.backbone.get_weights()))))
        """
    )
    env = dict(os.environ, KERAS_HOME=str(tmp_path), TF_CPP_MIN_LOG_LEVEL="3",
               HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert float(result.stdout.strip().splitlines()[-1]) == pytest.approx(_checksum(source), rel=1e-6)


def test_unknown_backbone_suggests_close_names():
    with pytest.raises(ValueError, match='Unknown backbone "resnet5".*Did you mean "ResNet50"'):
        fk.FineTuner("resnet5", fk.ClassificationHead(2), weights=None)
    with pytest.raises(ValueError, match='Did you mean "EfficientNetB0"'):
        fk.FineTuner("efficentnetb0", fk.ClassificationHead(2), weights=None)


def test_backbone_from_keras_file_and_missing_file(tmp_path):
    path = str(tmp_path / "backbone.keras")
    tiny_cnn().save(path)
    ft = fk.FineTuner(path, fk.ClassificationHead(2))
    assert ft.backbone.name == "tiny_cnn"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        fk.FineTuner(str(tmp_path / "missing.keras"), fk.ClassificationHead(2))


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"input_shape": (16, 16, 3), "weights": "bert"}, ValueError, "`weights` must be"),
        ({"input_shape": (16, 16, 3)}, ValueError, "at least 32x32"),
        ({"input_shape": (64, 64, 1)}, ValueError, "takes 3-channel images"),
        ({"input_shape": (64, 64, 3), "preprocessing": "bgr"}, ValueError, "Unknown preprocessing"),
        ({"input_shape": (64, 64, 3), "sequence_length": 8}, ValueError, "text"),
    ],
)
def test_constructor_errors(kwargs, error, match):
    kwargs.setdefault("weights", None)
    with pytest.raises(error, match=match):
        fk.FineTuner("mobilenetv2", fk.ClassificationHead(2), **kwargs)


def test_head_must_be_a_finetunekit_head():
    with pytest.raises(ValueError, match="`head` must be a finetunekit head"):
        fk.FineTuner(tiny_cnn(), keras.layers.Dense(2))


def test_user_model_without_input_size_needs_input_shape():
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 3)(inputs))
    with pytest.raises(ValueError, match="Pass input_shape"):
        fk.FineTuner(model, fk.ClassificationHead(2))
    ft = fk.FineTuner(model, fk.ClassificationHead(2), input_shape=(12, 12, 3))
    assert ft.predict(np.zeros((1, 20, 20, 3)), verbose=0).shape == (1, 2)
