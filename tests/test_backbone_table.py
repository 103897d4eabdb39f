"""The backbone table, row by row, against the real `keras.applications` models.

The fast tests check each row's names, preprocessing mode and sizes against
Keras, and the block split of a few small models. The slow sweep
(`pytest -m slow tests/test_backbone_table.py`) builds all 40 models with
random weights, splits them into blocks and runs each inside a FineTuner.
"""

import gc

import keras
import numpy as np
import pytest

import finetunekit as fk
from finetunekit.families.image.applications import APPLICATIONS, block_groups, get_application
from finetunekit.families.image.preprocessing import ImageNormalization

ROWS = list(APPLICATIONS.values())
ROW_IDS = [row.name for row in ROWS]
CONV_LAYERS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D)


def _small_size(row):
    # Every keras.applications model, NASNet included, accepts any size from its
    # minimum up when built with include_top=False (ImageNet weights too).
    return max(row.min_size, 32)


def _build(row, size=None):
    size = size or _small_size(row)
    return row.constructor()(include_top=False, weights=None, input_shape=(size, size, 3))


def _inbound_layers(layer):
    return [
        tensor._keras_history.operation
        for node in layer._inbound_nodes
        for tensor in node.input_tensors
    ]


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def check_groups(model, pattern):
    """Checks `block_groups(model, pattern)` is a clean split; returns the groups."""
    groups = block_groups(model, pattern)
    names = [name for name, _ in groups]
    assert len(set(names)) == len(names), f"a block name repeats: {names}"
    assert "stem" not in names[1:], names
    assert all(layers for _, layers in groups), "empty block"
    # Every layer but the input lands in exactly one block, in model order.
    flat = [layer for _, layers in groups for layer in layers]
    expected = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    assert [id(layer) for layer in flat] == [id(layer) for layer in expected]
    # A convolution and the BatchNormalization right after it share a block.
    block_of = {id(layer): name for name, layers in groups for layer in layers}
    for layer in expected:
        if isinstance(layer, keras.layers.BatchNormalization):
            for source in _inbound_layers(layer):
                if isinstance(source, CONV_LAYERS):
                    assert block_of[id(source)] == block_of[id(layer)], (
                        f"{source.name} is in block {block_of[id(source)]} but its "
                        f"BatchNormalization {layer.name} is in block {block_of[id(layer)]}"
                    )
    return groups


def check_fine_tuner(row, size):
    """Builds a FineTuner on the row with unfreeze=1, predicts and checks freezing."""
    ft = fk.FineTuner(
        backbone=row.name,
        head=fk.ClassificationHead(2),
        weights=None,
        input_shape=(size, size, 3),
        unfreeze=1,
    )
    assert ft.backbone.input_shape == (None, size, size, 3)
    groups = check_groups(ft.backbone, row.blocks)
    blocks = [group for group in groups if group[0] != "stem"]
    assert len(blocks) >= 2, [name for name, _ in groups]
    last_name, last_layers = blocks[-1]
    assert ft.unfrozen_blocks == [last_name]
    last = {id(layer) for layer in last_layers}
    for layer in ft.backbone.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.layers.BatchNormalization):
            assert not layer.trainable, layer.name
        else:
            assert layer.trainable == (id(layer) in last), layer.name
    assert not any(
        layer.trainable
        for layer in _all_layers(ft)
        if isinstance(layer, keras.layers.BatchNormalization)
    )
    expected_weights = {
        id(weight)
        for layer in last_layers
        if not isinstance(layer, keras.layers.BatchNormalization)
        for weight in layer.trainable_weights
    }
    assert expected_weights, f"the last block {last_name} has no trainable weights"
    assert {id(weight) for weight in ft.backbone.trainable_weights} == expected_weights

    image = np.random.default_rng(0).integers(0, 256, (1, 40, 50, 3), dtype=np.uint8)
    probs = ft.predict(image, verbose=0)
    assert probs.shape == (1, 2) and probs.dtype == np.float32
    assert np.all(np.isfinite(probs))
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, rtol=1e-5)


# --------------------------------------------------------------------- fast


def test_table_covers_every_keras_application():
    constructors = {name for name in dir(keras.applications) if name[:1].isupper()}
    assert len(ROWS) == 40
    assert {row.name for row in ROWS} == constructors
    assert len({row.key for row in ROWS}) == len(ROWS)


class _SizeProbe(Exception):
    pass


def _keras_sizes(row):
    """`(default_size, min_size)` the constructor passes to Keras' input-shape check."""
    from keras.src.applications import imagenet_utils

    seen = {}

    def probe(input_shape, default_size, min_size, **kwargs):
        seen.update(default_size=default_size, min_size=min_size)
        raise _SizeProbe

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(imagenet_utils, "obtain_input_shape", probe)
        with pytest.raises(_SizeProbe):
            row.constructor()(include_top=False, weights=None, input_shape=(1, 1, 3))
    return seen["default_size"], seen["min_size"]


@pytest.mark.parametrize("row", ROWS, ids=ROW_IDS)
def test_row_matches_keras(row):
    # The name is a keras.applications constructor from the row's module.
    assert hasattr(keras.applications, row.name)
    assert get_application(row.name) is row
    assert row.constructor().__module__ == f"keras.src.applications.{row.module}"

    # The preprocessing mode is the module's preprocess_input.
    images = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    module = getattr(keras.applications, row.module)
    expected = keras.ops.convert_to_numpy(module.preprocess_input(images.copy()))
    actual = keras.ops.convert_to_numpy(ImageNormalization(row.preprocessing)(images))
    np.testing.assert_allclose(actual, expected, atol=1e-4)

    # min_size is the smallest input Keras accepts (checked before any layer is built).
    small = row.min_size - 1
    with pytest.raises(ValueError, match=f"at least {row.min_size}x{row.min_size}"):
        row.constructor()(include_top=False, weights=None, input_shape=(small, small, 3))

    # image_size is the size of the ImageNet weights.
    if row.module == "mobilenet_v3":
        # MobileNetV3 checks its input size itself; its ImageNet weights exist
        # for 224x224 only.
        assert row.image_size == 224
    else:
        assert _keras_sizes(row) == (row.image_size, row.min_size)


def test_get_application_ignores_case_and_separators():
    for name in ("ResNet-50", "resnet50", "RESNET50", "res_net 50"):
        assert get_application(name) is APPLICATIONS["resnet50"]
    assert fk.get_application("mobilenet_v3_small").name == "MobileNetV3Small"
    assert fk.get_application("EfficientNet-V2-B0").name == "EfficientNetV2B0"


def test_unknown_name_suggests_the_close_match():
    for name, suggestion in [
        ("resnet5O", "ResNet50"),
        ("efficentnetb0", "EfficientNetB0"),
        ("xcepton", "Xception"),
    ]:
        with pytest.raises(ValueError, match=f'Did you mean "{suggestion}"') as info:
            get_application(name)
        assert f'Unknown backbone "{name}"' in str(info.value)


@pytest.mark.parametrize(
    "name, size, expected",
    [
        ("ResNet50", 32, ["stem", "conv2", "conv3", "conv4", "conv5"]),
        ("MobileNetV2", 32, ["stem"] + [str(i) for i in range(1, 17)]),
        ("VGG16", 32, [f"block{i}" for i in range(1, 6)]),
        ("EfficientNetB0", 32, ["stem"] + [f"block{i}" for i in range(1, 8)]),
        ("InceptionV3", 75, [f"mixed{i}" for i in range(11)]),
    ],
)
def test_block_groups_of_small_models(name, size, expected):
    row = get_application(name)
    model = _build(row, size)
    groups = check_groups(model, row.blocks)
    assert [block for block, _ in groups] == expected


def test_block_groups_keep_whole_residual_units():
    # Xception's shortcut conv, its BatchNormalization and the Add that closes a
    # block belong to that block, not to the next one.
    row = get_application("xception")
    groups = check_groups(_build(row), row.blocks)
    assert [block for block, _ in groups] == [f"block{i}" for i in range(1, 15)]
    for block, layers in groups[1:13]:
        kinds = [layer.__class__.__name__ for layer in layers]
        assert kinds.count("Add") == 1, (block, kinds)
    assert groups[-1][1][0].name == "block14_sepconv1"


def test_fine_tuner_unfreezes_only_the_last_block():
    check_fine_tuner(get_application("VGG16"), 32)


# --------------------------------------------------------------------- slow


@pytest.mark.slow
@pytest.mark.parametrize("row", ROWS, ids=ROW_IDS)
def test_every_row_builds_splits_and_fine_tunes(row):
    # The FineTuner builds the backbone with include_top=False and weights=None
    # at the small size; check_fine_tuner checks its blocks, freezing and output.
    try:
        check_fine_tuner(row, _small_size(row))
    finally:
        keras.backend.clear_session()
        gc.collect()
