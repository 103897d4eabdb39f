import json

import keras
import numpy as np
import pytest

from finetunekit.families.image.augmentation import (
    AUGMENT_KEYWORDS,
    RandomChannelShift,
    build_augmentation,
)
from finetunekit.families.image.preprocessing import ImageFormatter, ImageNormalization


def _roundtrip_layer(layer, x, tmp_path, training=False):
    """JSON config round trip and a .keras save/load round trip with equal outputs."""
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(layer)))
    rebuilt = keras.saving.deserialize_keras_object(config)
    assert type(rebuilt) is type(layer)
    assert rebuilt.get_config() == layer.get_config()
    inputs = keras.Input(x.shape[1:])
    model = keras.Model(inputs, layer(inputs))
    path = str(tmp_path / "layer.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(model.predict(x, verbose=0), loaded.predict(x, verbose=0), atol=1e-6)
    return loaded


@pytest.mark.parametrize("channels_in", [1, 3, 4])
@pytest.mark.parametrize("channels_out", [1, 3])
def test_image_formatter_channels_and_size(channels_in, channels_out):
    x = np.random.default_rng(0).integers(0, 255, (2, 10, 14, channels_in)).astype("uint8")
    out = keras.ops.convert_to_numpy(ImageFormatter((6, 8), channels=channels_out)(x))
    assert out.shape == (2, 6, 8, channels_out)
    assert out.dtype == np.float32
    assert 0 <= out.min() and out.max() <= 255


def test_image_formatter_keeps_values_when_size_matches():
    x = np.random.default_rng(0).integers(0, 255, (2, 6, 8, 3)).astype("uint8")
    out = keras.ops.convert_to_numpy(ImageFormatter((6, 8))(x))
    np.testing.assert_array_equal(out, x.astype("float32"))


def test_image_formatter_grayscale_to_rgb_repeats():
    x = np.arange(2 * 4 * 4).reshape(2, 4, 4, 1).astype("float32")
    out = keras.ops.convert_to_numpy(ImageFormatter((4, 4))(x))
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], x[..., 0])


def test_image_formatter_rejects_bad_channels():
    with pytest.raises(ValueError, match="1 \\(grayscale\\), 3 \\(RGB\\) or 4"):
        ImageFormatter((4, 4))(np.zeros((1, 4, 4, 2), "float32"))
    with pytest.raises(ValueError, match="image_size"):
        ImageFormatter((4, 4, 3))


def test_image_formatter_unknown_channels_in_graph():
    inputs = keras.Input((None, None, None))
    model = keras.Model(inputs, ImageFormatter((5, 5))(inputs))
    assert model.output_shape == (None, 5, 5, 3)
    gray = np.full((1, 7, 7, 1), 100.0, "float32")
    rgba = np.full((1, 7, 7, 4), 50.0, "float32")
    np.testing.assert_allclose(model.predict(gray, verbose=0), 100.0)
    np.testing.assert_allclose(model.predict(rgba, verbose=0), 50.0)


@pytest.mark.parametrize(
    "mode,expected",
    [("tf", 1.0), ("zero_one", 1.0), ("none", 255.0)],
)
def test_image_normalization_simple_modes(mode, expected):
    out = keras.ops.convert_to_numpy(ImageNormalization(mode)(np.full((1, 2, 2, 3), 255.0)))
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_image_normalization_caffe_and_torch_match_keras():
    x = np.random.default_rng(1).uniform(0, 255, (2, 4, 4, 3)).astype("float32")
    caffe = keras.applications.resnet.preprocess_input(x.copy())
    torch = keras.applications.densenet.preprocess_input(x.copy())
    np.testing.assert_allclose(ImageNormalization("caffe")(x), caffe, atol=1e-4)
    np.testing.assert_allclose(ImageNormalization("torch")(x), torch, atol=1e-4)
    with pytest.raises(ValueError, match='Unknown preprocessing mode "mean2"'):
        ImageNormalization("mean2")


@pytest.mark.parametrize(
    "layer",
    [
        ImageFormatter((6, 6), channels=1),
        ImageNormalization("caffe"),
        RandomChannelShift(10.0, seed=3),
    ],
    ids=["formatter", "normalization", "channel_shift"],
)
def test_layer_roundtrip(layer, tmp_path):
    x = np.random.default_rng(0).uniform(0, 255, (2, 6, 6, 3)).astype("float32")
    _roundtrip_layer(layer, x, tmp_path)


def test_random_channel_shift_only_in_training():
    x = np.full((4, 3, 3, 3), 100.0, "float32")
    layer = RandomChannelShift(30.0, seed=1)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x)), x)
    out = keras.ops.convert_to_numpy(layer(x, training=True))
    shift = out - x
    assert np.abs(shift).max() <= 30.0 + 1e-5 and np.abs(shift).max() > 0
    # one offset per image and channel
    np.testing.assert_allclose(shift, np.broadcast_to(shift[:, :1, :1, :], shift.shape), atol=1e-5)


def test_build_augmentation_maps_keywords():
    layers = build_augmentation(
        {
            "rotation_range": 20,
            "width_shift_range": 0.1,
            "height_shift_range": 0.2,
            "shear_range": 10,
            "zoom_range": 0.2,
            "horizontal_flip": True,
            "vertical_flip": True,
            "brightness_range": [0.8, 1.2],
            "channel_shift_range": 15,
            "fill_mode": "constant",
            "cval": 3.0,
        }
    )
    by_type = {type(layer).__name__: layer for layer in layers}
    assert set(by_type) == {
        "RandomFlip",
        "RandomRotation",
        "RandomTranslation",
        "RandomShear",
        "RandomZoom",
        "RandomBrightness",
        "RandomChannelShift",
    }
    assert by_type["RandomFlip"].mode == "horizontal_and_vertical"
    assert by_type["RandomRotation"].factor == pytest.approx((-20 / 360, 20 / 360))
    assert by_type["RandomTranslation"].height_lower == pytest.approx(-0.2)
    assert by_type["RandomTranslation"].width_upper == pytest.approx(0.1)
    assert by_type["RandomTranslation"].fill_mode == "constant"
    assert by_type["RandomTranslation"].fill_value == 3.0
    assert (by_type["RandomZoom"].height_lower, by_type["RandomZoom"].height_upper) == pytest.approx(
        (-0.2, 0.2)
    )


def test_build_augmentation_presets_and_lists():
    assert build_augmentation(None) == []
    assert len(build_augmentation("default")) >= 3
    flip = keras.layers.RandomFlip()
    assert build_augmentation([flip]) == [flip]
    with pytest.raises(ValueError, match="Keras layers"):
        build_augmentation(["flip"])


def test_unknown_augment_keyword_lists_known_ones():
    with pytest.raises(ValueError) as info:
        build_augmentation({"rotation": 10, "horizontal_flip": True})
    message = str(info.value)
    assert "rotation" in message
    for keyword in AUGMENT_KEYWORDS:
        assert keyword in message


def test_augmentation_changes_images_only_in_training():
    x = np.random.default_rng(0).uniform(0, 255, (4, 16, 16, 3)).astype("float32")
    inputs = keras.Input((16, 16, 3))
    y = inputs
    for layer in build_augmentation("default"):
        y = layer(y)
    model = keras.Model(inputs, y)
    np.testing.assert_allclose(model(x, training=False), x, atol=1e-4)
    assert np.abs(keras.ops.convert_to_numpy(model(x, training=True)) - x).max() > 1.0
