"""Backbone resolution: what `FineTuner(backbone=...)` accepts."""

from finetunekit.backbones.applications import (
    APPLICATIONS,
    BackboneSpec,
    BlockPattern,
    block_groups,
    get_application,
)
from finetunekit.backbones.image import ImageBackbone


def resolve_backbone(backbone, **options):
    """Returns the backbone adapter for `backbone`: image or text.

    `keras.applications` names come first; then keras-hub presets, `hf://`
    handles, preset / Hugging Face folders and `keras_hub` Backbone instances
    resolve to a `TextBackbone`; everything else is an image backbone.

    Args:
        backbone: str, keras.Model or path.
        **options: `weights`, `input_shape`, `preprocessing`, `policy`,
            `architecture`; for text also `sequence_length`, `preprocessor`,
            `lora_rank`, `layer_decay`.

    Returns:
        An adapter with `model`, `kind`, `input_shape`, `preprocessing`,
        `architecture`, `groups()`, `build_graph()`, `data_adapter()` and
        `extra_config()`.
    """
    if _is_text_backbone(backbone):
        from finetunekit.backbones.text import TextBackbone

        return TextBackbone(backbone, **options)
    return ImageBackbone(backbone, **options)


def _is_text_backbone(backbone):
    from finetunekit.backbones.text import is_keras_hub_backbone, is_text_preset

    if is_keras_hub_backbone(backbone):
        return True
    if isinstance(backbone, str):
        try:
            get_application(backbone)
            return False
        except ValueError:
            pass
    return is_text_preset(backbone)


__all__ = [
    "APPLICATIONS",
    "BackboneSpec",
    "BlockPattern",
    "ImageBackbone",
    "block_groups",
    "get_application",
    "resolve_backbone",
]
