"""The table of `keras.applications` backbones, kept as data.

Each row says how to build one of the 40 `keras.applications` constructors as
a feature extractor, which `preprocess_input` convention its ImageNet weights
were trained with, its native input size and how its layer names split it into
blocks (used by `unfreeze=N`). `tests/test_backbone_table.py` checks every row
against the real model.
"""

import dataclasses
import difflib
import re


@dataclasses.dataclass(frozen=True)
class BlockPattern:
    """How layer names of a backbone map onto blocks.

    Args:
        regex: str. A regular expression searched in each layer name. The first
            capture group (or the whole match) names the block.
        mode: str. `"prefix"`: every layer of a block carries the block name
            (layers that do not match join the block before them, or the stem).
            `"marker"`: only the layer that closes a block matches; layers that
            do not match join the next closing layer.
    """

    regex: str
    mode: str = "prefix"


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """One row of the backbone table.

    Args:
        name: str. The `keras.applications` constructor name, e.g. `"ResNet50"`.
        module: str. The `keras.applications` sub-module that holds its
            `preprocess_input`, e.g. `"resnet"`.
        image_size: int. Native (ImageNet) input height and width.
        preprocessing: str. Normalisation mode: `"caffe"`, `"tf"`, `"torch"` or
            `"none"` (the model normalises inside itself).
        blocks: BlockPattern. How layers group into blocks.
        min_size: int. Smallest input size the architecture accepts.
    """

    name: str
    module: str
    image_size: int
    preprocessing: str
    blocks: BlockPattern
    min_size: int = 32

    @property
    def key(self):
        return normalize_name(self.name)

    def constructor(self):
        import keras

        return getattr(keras.applications, self.name)


_RESNET = BlockPattern(r"^(conv[2-5])_block")
_DENSENET = BlockPattern(r"^(?:conv|pool)([2-5])_")
_EFFICIENTNET = BlockPattern(r"^(block\d+)[a-z]_")
_CONVNEXT = BlockPattern(r"_stage_(\d+)_block", mode="marker")
_VGG = BlockPattern(r"^(block\d)_")
_MOBILENET = BlockPattern(r"^conv_(?:dw|pw|pad)_(\d+)")
_MOBILENET_V2 = BlockPattern(r"^block_(\d+)_")
_MOBILENET_V3 = BlockPattern(r"^(expanded_conv(?:_\d+)?)_")
_INCEPTION_V3 = BlockPattern(r"^(mixed\d+)$", mode="marker")
_INCEPTION_RESNET_V2 = BlockPattern(
    r"^(mixed_\d[a-z]|block\d+_\d+_ac|block8_10_conv|conv_7b_ac)$", mode="marker"
)
_XCEPTION = BlockPattern(r"^(block\d+)_")
_NASNET = BlockPattern(r"^((?:normal|reduction)_concat_\w+)$", mode="marker")


def _rows():
    rows = []
    for suffix in ("Tiny", "Small", "Base", "Large", "XLarge"):
        rows.append(BackboneSpec(f"ConvNeXt{suffix}", "convnext", 224, "none", _CONVNEXT))
    for depth in (121, 169, 201):
        rows.append(BackboneSpec(f"DenseNet{depth}", "densenet", 224, "torch", _DENSENET))
    for index, size in enumerate((224, 240, 260, 300, 380, 456, 528, 600)):
        rows.append(BackboneSpec(f"EfficientNetB{index}", "efficientnet", size, "none", _EFFICIENTNET))
    for suffix, size in (("B0", 224), ("B1", 240), ("B2", 260), ("B3", 300), ("S", 384), ("M", 480), ("L", 480)):
        rows.append(
            BackboneSpec(f"EfficientNetV2{suffix}", "efficientnet_v2", size, "none", _EFFICIENTNET)
        )
    rows += [
        BackboneSpec("InceptionResNetV2", "inception_resnet_v2", 299, "tf", _INCEPTION_RESNET_V2, 75),
        BackboneSpec("InceptionV3", "inception_v3", 299, "tf", _INCEPTION_V3, 75),
        BackboneSpec("MobileNet", "mobilenet", 224, "tf", _MOBILENET),
        BackboneSpec("MobileNetV2", "mobilenet_v2", 224, "tf", _MOBILENET_V2),
        BackboneSpec("MobileNetV3Small", "mobilenet_v3", 224, "none", _MOBILENET_V3),
        BackboneSpec("MobileNetV3Large", "mobilenet_v3", 224, "none", _MOBILENET_V3),
        BackboneSpec("NASNetMobile", "nasnet", 224, "tf", _NASNET),
        BackboneSpec("NASNetLarge", "nasnet", 331, "tf", _NASNET),
    ]
    for depth in (50, 101, 152):
        rows.append(BackboneSpec(f"ResNet{depth}", "resnet", 224, "caffe", _RESNET))
        rows.append(BackboneSpec(f"ResNet{depth}V2", "resnet_v2", 224, "tf", _RESNET))
    rows += [
        BackboneSpec("VGG16", "vgg16", 224, "caffe", _VGG),
        BackboneSpec("VGG19", "vgg19", 224, "caffe", _VGG),
        BackboneSpec("Xception", "xception", 299, "tf", _XCEPTION, 71),
    ]
    return rows


def normalize_name(name):
    """Lower-cases a backbone name and drops separators: `"ResNet-50"` -> `"resnet50"`."""
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


APPLICATIONS = {row.key: row for row in _rows()}


def get_application(name):
    """Returns the `BackboneSpec` row for a `keras.applications` name.

    Args:
        name: str. Case-insensitive constructor name, e.g. `"resnet50"`,
            `"EfficientNetV2B0"` or `"mobilenet_v3_small"`.

    Returns:
        The matching `BackboneSpec`.

    Raises:
        ValueError: for an unknown name, with the closest known names.
    """
    key = normalize_name(name)
    if key in APPLICATIONS:
        return APPLICATIONS[key]
    known = sorted(row.name for row in APPLICATIONS.values())
    close = difflib.get_close_matches(key, list(APPLICATIONS), n=3, cutoff=0.6)
    hint = ""
    if close:
        hint = " Did you mean " + " or ".join(f'"{APPLICATIONS[c].name}"' for c in close) + "?"
    raise ValueError(
        f'Unknown backbone "{name}".{hint} Expected a keras.applications name '
        f"({', '.join(known)}), a keras-hub preset, a keras.Model or a path to a "
        f'".keras" file. Received: backbone="{name}"'
    )


def block_groups(model, pattern=None):
    """Splits a backbone's top-level layers into ordered blocks.

    Args:
        model: keras.Model. The backbone.
        pattern: BlockPattern or None. `None` makes every top-level layer that
            holds weights (BatchNorm excepted) close a block of its own (for
            models of unknown layout).

    Returns:
        A list of `(block_name, [layers])`, input side first. A block named
        `"stem"` (layers before the first block of a `"prefix"` pattern) is
        listed first when present.
    """
    layers = [layer for layer in model.layers if not layer.__class__.__name__ == "InputLayer"]
    if pattern is None:
        # Every layer with weights closes a block of its own, except BatchNorm: it
        # always stays frozen, so a block of its own would unfreeze nothing.
        return _close_blocks(layers, _weighted_layer_name)
    regex = re.compile(pattern.regex)

    def key_of(layer):
        match = regex.search(layer.name)
        if match is None:
            return None
        return next((g for g in match.groups() if g is not None), match.group(0))

    if pattern.mode == "marker":
        return _close_blocks(layers, key_of)
    if pattern.mode == "prefix":
        groups = []
        for layer in layers:
            key = key_of(layer)
            if key is not None:
                if not groups or groups[-1][0] != key:
                    groups.append((key, []))
            elif not groups:
                groups.append(("stem", []))
            groups[-1][1].append(layer)
        return groups
    raise ValueError(f'Unknown block pattern mode "{pattern.mode}". Expected "prefix" or "marker".')


def _weighted_layer_name(layer):
    if not layer.weights or layer.__class__.__name__ == "BatchNormalization":
        return None
    return layer.name


def _close_blocks(layers, key_of):
    """Groups layers so that each layer with a key closes the block of that key.

    Layers without a key join the next keyed layer; trailing ones join the last
    block (or a `"stem"` block if no layer has a key).
    """
    groups, pending = [], []
    for layer in layers:
        pending.append(layer)
        key = key_of(layer)
        if key is None:
            continue
        if groups and groups[-1][0] == key:
            groups[-1][1].extend(pending)
        else:
            groups.append((key, pending))
        pending = []
    if pending:
        if groups:
            groups[-1][1].extend(pending)
        else:
            groups.append(("stem", pending))
    return groups
