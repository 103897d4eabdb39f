"""Export to SavedModel and TFLite with preprocessing inside.

Tolerances: the SavedModel runs the same TensorFlow graph as Keras, so its
outputs agree to atol=1e-5; TFLite uses its own kernels (XNNPACK), atol=1e-4.
"""

import os

import numpy as np
import pytest

import finetunekit as fk
from tests.conftest import tiny_cnn

SAVED_MODEL_ATOL = 1e-5
TFLITE_ATOL = 1e-4


def _trained(tmp_path=None, **kwargs):
    rng = np.random.default_rng(0)
    y = np.arange(16) % 3
    x = (rng.integers(0, 80, (16, 16, 16, 3)) + 80 * y[:, None, None, None]).astype("uint8")
    ft = fk.FineTuner(
        tiny_cnn(), fk.ClassificationHead(3, hidden_units=(8,)), preprocessing="tf",
        unfreeze="all", **kwargs,
    )
    ft.fit(x, np.array(["a", "b", "c"])[y], epochs=1, batch_size=8, verbose=0)
    return ft, x


def test_saved_model_matches_keras_on_raw_uint8_images(tmp_path):
    import tensorflow as tf

    ft, x = _trained()
    path = ft.export(str(tmp_path / "served"), format="saved_model")
    assert path == str(tmp_path / "served")
    assert (tmp_path / "served" / "labels.txt").read_text().split() == ["a", "b", "c"]
    served = tf.saved_model.load(path)
    expected = ft.predict(x, verbose=0)
    got = served.serve(tf.constant(x.astype("float32"))).numpy()
    np.testing.assert_allclose(got, expected, atol=SAVED_MODEL_ATOL)
    # the default serving signature and other image sizes work too (resized inside)
    signature = served.signatures["serving_default"]
    out = list(signature(images=tf.constant(x[:2].astype("float32"))).values())[0].numpy()
    np.testing.assert_allclose(out, expected[:2], atol=SAVED_MODEL_ATOL)
    big = np.random.default_rng(1).integers(0, 255, (2, 24, 20, 3)).astype("uint8")
    np.testing.assert_allclose(
        served.serve(tf.constant(big.astype("float32"))).numpy(),
        ft.predict(big, verbose=0),
        atol=SAVED_MODEL_ATOL,
    )


def test_tflite_matches_keras_on_raw_uint8_images(tmp_path):
    import tensorflow as tf

    ft, x = _trained(augment={"horizontal_flip": True, "rotation_range": 10})
    path = ft.export(str(tmp_path / "lite"), format="tflite")
    assert path.endswith("model.tflite") and os.path.getsize(path) > 0
    interpreter = tf.lite.Interpreter(model_path=path)
    detail = interpreter.get_input_details()[0]
    assert list(detail["shape_signature"]) == [-1, 16, 16, 3]
    assert detail["dtype"] == np.float32
    interpreter.resize_tensor_input(detail["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], x.astype("float32"))
    interpreter.invoke()
    got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(got, ft.predict(x, verbose=0), atol=TFLITE_ATOL)


def test_export_of_model_loaded_from_keras_file(tmp_path):
    import tensorflow as tf

    ft, x = _trained(augment={"horizontal_flip": True})
    ft.save(str(tmp_path / "m.keras"))
    loaded = fk.load(str(tmp_path / "m.keras"))
    path = loaded.export(str(tmp_path / "served"))
    served = tf.saved_model.load(path)  # keep a reference: it owns the variables
    got = served.serve(tf.constant(x.astype("float32"))).numpy()
    np.testing.assert_allclose(got, ft.predict(x, verbose=0), atol=SAVED_MODEL_ATOL)


def test_unknown_export_format():
    ft = fk.FineTuner(tiny_cnn(), fk.ClassificationHead(2))
    with pytest.raises(ValueError, match='Unknown export format "coreml"'):
        ft.export("out", format="coreml")
