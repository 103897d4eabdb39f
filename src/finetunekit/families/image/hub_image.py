"""keras-hub image backbones with feature pyramids (ResNet, EfficientNet, MiT, CSPNet, ...).

A keras-hub `FeaturePyramidBackbone` publishes its stage outputs as
`pyramid_outputs` (`{"P2": tensor, ...}`); this kind hands them to heads
that need `"pyramid"` instead of guessing stages from layer strides. The
image encoders inside keras-hub's segmenters and detectors (DeepLabV3,
SegFormer, RetinaNet backbones and their tasks) are taken out and used the
same way; the task's own decoder is left behind (the head brings one).
D-FINE (`DFineBackbone`, `DFineObjectDetector`) lends its HGNetV2 encoder
(`HGNetV2Backbone`, usable on its own too): a backbone with one output per
stage (`stage_names`) rather than `pyramid_outputs`, whose stages become
pyramid levels by their stride.
"""

import os
import sys

import keras

from finetunekit.core.presets import read_preset_config
from finetunekit.families.image.downloads import is_download_failure
from finetunekit.families.image.kinds import KerasModelBackbone


def pyramid_encoder(value):
    """The keras-hub image encoder with a feature pyramid in `value`, or None.

    Args:
        value: a keras-hub Backbone, a segmenter or detector backbone with an
            `image_encoder` (DeepLabV3, SegFormer, RetinaNet) or a `backbone`
            (D-FINE's HGNetV2), or a keras-hub Task holding one.

    Returns:
        A `FeaturePyramidBackbone` with `pyramid_outputs`, a staged encoder
        (one output per stage, see `is_staged_encoder`), or None.
    """
    keras_hub = sys.modules.get("keras_hub")
    if keras_hub is None:
        return None
    if isinstance(value, keras_hub.models.Task):
        value = value.backbone
    if not isinstance(value, keras_hub.models.Backbone):
        return None
    # a RetinaNet backbone is a pyramid itself (its FPN): its encoder goes under the head's
    for candidate in (getattr(value, "image_encoder", None), getattr(value, "backbone", None), value):
        if isinstance(candidate, keras_hub.models.FeaturePyramidBackbone) and candidate.pyramid_outputs:
            return candidate
        if is_staged_encoder(candidate):
            return candidate
    return None


def is_staged_encoder(model):
    """True for a keras-hub image Backbone with one named output per stage (HGNetV2).

    Example:
    ```python
    is_staged_encoder(keras_hub.models.HGNetV2Backbone.from_preset("hgnetv2_b4_ssld_stage2_ft_in1k"))
    ```
    """
    keras_hub = sys.modules.get("keras_hub")
    return (
        keras_hub is not None and isinstance(model, keras_hub.models.Backbone)
        and isinstance(getattr(model, "stage_names", None), (list, tuple))
        and isinstance(model.output, dict) and set(model.output) <= set(model.stage_names)
    )


def staged_pyramid(model, image_size):
    """`{"P2": tensor, ...}` of a staged encoder: each stage at its stride (the last one wins).

    Args:
        model: a staged encoder built for a fixed input size.
        image_size: int. Input height the strides are measured against.
    """
    import math

    found = {}
    for name in model.stage_names:
        tensor = model.output.get(name)
        if tensor is None or not tensor.shape[1]:
            continue
        level = math.log2(image_size / tensor.shape[1])
        if level.is_integer() and level >= 1:
            found[int(level)] = tensor
    return {f"P{level}": found[level] for level in sorted(found)}


def is_image_preset(value):
    """True for a local keras-hub preset folder of an image backbone, or a named image preset."""
    if not isinstance(value, (str, os.PathLike)):
        return False
    value = os.fspath(value)
    if os.path.isdir(value):
        config = read_preset_config(value)
        return config is not None and _is_image_config(config)
    if os.sep in value or value.endswith((".keras", ".h5")):
        return False
    import keras_hub

    names = set(keras_hub.models.FeaturePyramidBackbone.presets)
    names |= set(keras_hub.models.ImageSegmenter.presets)
    names |= set(keras_hub.models.ObjectDetector.presets)  # RetinaNet, D-FINE
    names |= set(keras_hub.models.HGNetV2Backbone.presets)
    return value in names


def _is_image_config(config):
    import keras_hub

    cls = keras.saving.get_registered_object(config.get("registered_name", ""))
    if cls is None:
        return False
    inner = config.get("config", {})
    return (
        issubclass(cls, (keras_hub.models.FeaturePyramidBackbone, keras_hub.models.HGNetV2Backbone))
        or "image_encoder" in inner
        or issubclass(cls, keras_hub.models.DFineBackbone)
    )


class KerasHubImageBackbone(KerasModelBackbone):
    """A keras-hub image backbone with `pyramid_outputs`, a segmenter/detector, or their preset.

    Accepts a `keras_hub.models.FeaturePyramidBackbone` (`ResNetBackbone`,
    `MiTBackbone`, ...), a DeepLabV3/SegFormer/RetinaNet backbone or task
    (their `image_encoder` is used), an `HGNetV2Backbone` or a D-FINE
    backbone or detector (its HGNetV2 encoder is used), a local preset
    folder of one of these, or a keras-hub image, segmenter or detector
    preset name. Images are normalised as the preset's
    `ImageConverter` does (when it maps onto a finetunekit mode), else with
    ImageNet mean/std (`"torch"`); pass `preprocessing=` to choose.

    Example:
    ```python
    encoder = keras_hub.models.ResNetBackbone.from_preset("resnet_50_imagenet")
    ft = fk.FineTuner(backbone=encoder, head=fk.SegmentationHead(3), input_shape=(256, 256, 3))
    ```
    """

    name = "keras_hub_image"
    description = "a keras-hub image backbone with pyramid outputs, a segmenter or its preset folder"
    priority = 45  # before the text kind, which takes any preset folder

    @classmethod
    def matches(cls, backbone):
        return pyramid_encoder(backbone) is not None or is_image_preset(backbone)

    def __init__(self, backbone, weights="imagenet", input_shape=None, preprocessing="auto",
                 policy="float32", architecture=None, layer_decay=None, **options):
        self._converter_mode = "torch"
        super().__init__(backbone, weights, input_shape, preprocessing, policy, architecture,
                         layer_decay, **options)
        if preprocessing == "auto":
            self.preprocessing = self._converter_mode

    def _load(self, backbone, weights, input_shape, policy):
        if isinstance(backbone, (str, os.PathLike)):
            self.learns_norm_stats = weights is None  # a preset built without its weights
            backbone = self._from_preset(os.fspath(backbone), weights, policy)
            weights = None
        encoder = pyramid_encoder(backbone)
        if encoder is None:
            raise ValueError(
                f"The keras-hub model {backbone.name!r} has no image encoder with pyramid "
                "outputs (keras_hub.models.FeaturePyramidBackbone)."
            )
        if input_shape is None:
            shape = tuple(getattr(encoder, "image_shape", None) or (None, None, 3))
            if None in shape[:2]:
                raise ValueError(
                    f"The keras-hub backbone {encoder.name!r} takes images of any size; pass "
                    "input_shape=(height, width, 3), the size it should see."
                )
            input_shape = shape
        encoder = _rebuilt(encoder, policy, input_shape)
        return super()._load(encoder, weights if weights != "imagenet" else None, input_shape,
                             "float32")

    def _from_preset(self, preset, weights, policy):
        import keras_hub

        try:
            model = keras_hub.models.Backbone.from_preset(
                preset, load_weights=weights is not None, dtype=policy
            )
        except Exception as error:  # keras-hub raises requests' and others' errors
            if not _offline(error):
                raise
            raise ConnectionError(
                f"Could not download the keras-hub preset {preset!r}: no network ({error}). "
                "Where there is a network, save it with keras_hub.models.Backbone.from_preset("
                f"{preset!r}).save_to_preset('folder'), then pass backbone='folder'."
            ) from error
        self._converter_mode = converter_mode(preset)
        return model

    def pyramid_outputs(self):
        """The encoder's own `pyramid_outputs`, or a staged encoder's stages by stride."""
        if is_staged_encoder(self.model):
            return staged_pyramid(self.model, self.input_shape[0])
        return dict(self.model.pyramid_outputs)

    def feature_output(self):
        """The deepest stage of a staged encoder; the single output otherwise."""
        if is_staged_encoder(self.model):
            levels = self.pyramid_outputs()
            return levels[max(levels, key=lambda level: int(level[1:]))]
        return super().feature_output()


def _rebuilt(encoder, policy, input_shape):
    """The encoder in `policy`; a staged one with every stage as an output, at `input_shape`.

    Its stride of each stage is then known from static shapes.
    """
    config = encoder.get_config()
    changes = {}
    if policy != encoder.dtype_policy.name:
        changes["dtype"] = policy
    if is_staged_encoder(encoder):
        if list(config.get("out_features") or []) != list(encoder.stage_names):
            changes["out_features"] = list(encoder.stage_names)
        if tuple(config.get("image_shape") or ())[:2] != tuple(input_shape[:2]):
            changes["image_shape"] = tuple(input_shape)
    if not changes:
        return encoder
    rebuilt = type(encoder).from_config({**config, **changes})
    rebuilt.set_weights(encoder.get_weights())
    return rebuilt


def _offline(error):
    """A failed download: Keras' own signs, or requests' connection errors (an OSError) of kagglehub."""
    signs = ("Failed to resolve", "Max retries exceeded", "Connection refused", "Network is unreachable")
    return is_download_failure(error) or (
        isinstance(error, OSError) and any(sign in str(error) for sign in signs)
    )


def converter_mode(preset):
    """The finetunekit normalisation mode matching a preset's `ImageConverter` (or `"torch"`)."""
    import keras_hub
    import numpy as np

    try:
        converter = keras_hub.layers.ImageConverter.from_preset(preset)
    except (ValueError, FileNotFoundError, KeyError):
        return "torch"
    scale = np.atleast_1d(np.asarray(converter.scale if converter.scale is not None else 1.0))
    offset = np.atleast_1d(np.asarray(converter.offset if converter.offset is not None else 0.0))
    modes = {
        "zero_one": ([1 / 255.0], [0.0]),
        "tf": ([1 / 127.5], [-1.0]),
        "torch": (1 / (255.0 * np.array([0.229, 0.224, 0.225])),
                  -np.array([0.485, 0.456, 0.406]) / np.array([0.229, 0.224, 0.225])),
        "none": ([1.0], [0.0]),
    }
    for mode, (want_scale, want_offset) in modes.items():
        if np.allclose(scale, want_scale, rtol=1e-3) and np.allclose(offset, want_offset, atol=1e-3):
            return mode
    return "torch"
