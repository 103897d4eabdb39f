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
    """Returns the backbone adapter for `backbone` (today: images).

    Args:
        backbone: str, keras.Model or path.
        **options: `weights`, `input_shape`, `preprocessing`, `policy`,
            `architecture`.

    Returns:
        An adapter with `model`, `kind`, `input_shape`, `preprocessing`,
        `architecture`, `groups()`, `build_graph()`, `data_adapter()` and
        `extra_config()`.
    """
    return ImageBackbone(backbone, **options)


__all__ = [
    "APPLICATIONS",
    "BackboneSpec",
    "BlockPattern",
    "ImageBackbone",
    "block_groups",
    "get_application",
    "resolve_backbone",
]
