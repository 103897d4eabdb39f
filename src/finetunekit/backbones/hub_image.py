"""keras-hub image backbones with feature pyramids (ResNet, EfficientNet, MiT, CSPNet, ...).

A keras-hub `FeaturePyramidBackbone` publishes its stage outputs as
`pyramid_outputs` (`{"P2": tensor, ...}`); this kind hands them to heads
that need `"pyramid"` instead of guessing stages from layer strides. The
image encoders inside keras-hub's segmenters and detectors (DeepLabV3,
SegFormer, RetinaNet backbones and their tasks) are taken out and used the
same way; the task's own decoder is left behind (the head brings one).
"""

import json
import os
import sys

import keras

from finetunekit.backbones.downloads import is_download_failure
from finetunekit.backbones.image import KerasModelBackbone

#: Named presets that need a download are accepted by name; local folders by their config.
PRESET_PREFIXES = ("kaggle://", "gs://", "modelscope://")


def pyramid_encoder(value):
    """The keras-hub `FeaturePyramidBackbone` in `value`, or None.

    Args:
        value: a keras-hub Backbone, a segmenter or detector backbone with an
            `image_encoder`, or a keras-hub Task holding one.

    Returns:
        The feature-pyramid image encoder, or None for anything else.
    """
    keras_hub = sys.modules.get("keras_hub")
    if keras_hub is None:
        return None
    if isinstance(value, keras_hub.models.Task):
        value = value.backbone
    if not isinstance(value, keras_hub.models.Backbone):
        return None
    for candidate in (value, getattr(value, "image_encoder", None)):
        if isinstance(candidate, keras_hub.models.FeaturePyramidBackbone) and candidate.pyramid_outputs:
            return candidate
    return None


def is_image_preset(value):
    """True for a local keras-hub preset folder of an image backbone, or a named image preset."""
    if not isinstance(value, (str, os.PathLike)):
        return False
    value = os.fspath(value)
    config = os.path.join(value, "config.json")
    if os.path.isdir(value):
        return os.path.exists(config) and _is_image_config(config)
    if os.sep in value or value.endswith((".keras", ".h5")):
        return False
    import keras_hub

    names = set(keras_hub.models.FeaturePyramidBackbone.presets)
    names |= set(keras_hub.models.ImageSegmenter.presets)
    return value in names


def _is_image_config(path):
    with open(path, encoding="utf-8") as f:
        config = json.load(f)
    import keras_hub

    cls = keras.saving.get_registered_object(config.get("registered_name", ""))
    if cls is None:
        return False
    inner = config.get("config", {})
    return issubclass(cls, keras_hub.models.FeaturePyramidBackbone) or "image_encoder" in inner


class KerasHubImageBackbone(KerasModelBackbone):
    """A keras-hub image backbone with `pyramid_outputs`, a segmenter/detector, or their preset.

    Accepts a `keras_hub.models.FeaturePyramidBackbone` (`ResNetBackbone`,
    `MiTBackbone`, ...), a DeepLabV3/SegFormer/RetinaNet backbone or task
    (their `image_encoder` is used), a local preset folder of one of these,
    or a keras-hub image preset name. Images are normalised as the preset's
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
            backbone = self._from_preset(os.fspath(backbone), weights, policy)
            weights = None
        encoder = pyramid_encoder(backbone)
        if encoder is None:
            raise ValueError(
                f"The keras-hub model {backbone.name!r} has no image encoder with pyramid "
                "outputs (keras_hub.models.FeaturePyramidBackbone)."
            )
        if policy != encoder.dtype_policy.name:
            rebuilt = type(encoder).from_config({**encoder.get_config(), "dtype": policy})
            rebuilt.set_weights(encoder.get_weights())
            encoder = rebuilt
        if input_shape is None:
            shape = tuple(getattr(encoder, "image_shape", None) or (None, None, 3))
            if None in shape[:2]:
                raise ValueError(
                    f"The keras-hub backbone {encoder.name!r} takes images of any size; pass "
                    "input_shape=(height, width, 3), the size it should see."
                )
            input_shape = shape
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
        """The encoder's own `pyramid_outputs` (stage outputs named by keras-hub)."""
        return dict(self.model.pyramid_outputs)


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
