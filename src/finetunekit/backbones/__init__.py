"""Backbone kinds: what `FineTuner(backbone=...)` accepts, resolved through a registry."""

from finetunekit.backbones.applications import (
    APPLICATIONS,
    BackboneSpec,
    BlockPattern,
    block_groups,
    get_application,
)
from finetunekit.backbones.audio import AudioBackbone
from finetunekit.backbones.base import (
    BACKBONE_OUTPUTS,
    BackboneKind,
    NoBackboneKind,
    backbone_kinds,
    register_backbone_kind,
)
from finetunekit.backbones.base import resolve_backbone as _resolve
from finetunekit.backbones.embeddings import Embeddings, EmbeddingsBackbone, IdEmbedding
from finetunekit.backbones.hub_image import KerasHubImageBackbone
from finetunekit.backbones.image import (
    ApplicationsBackbone,
    ImageBackbone,
    KerasModelBackbone,
    pyramid_layers,
)
from finetunekit.backbones.seq2seq import Seq2SeqBackbone
from finetunekit.backbones.side_features import CategoricalFeature, TextFeature, encode_texts
from finetunekit.backbones.text import TextEncoderBackbone, close_preset_names
from finetunekit.backbones.vector import VectorModelBackbone

register_backbone_kind(ApplicationsBackbone)
register_backbone_kind(KerasHubImageBackbone)  # before the text kind, which takes any preset folder
register_backbone_kind(AudioBackbone)  # before text: Whisper presets also have a tokenizer
register_backbone_kind(TextEncoderBackbone)
register_backbone_kind(Seq2SeqBackbone, first=True)  # before text encoders, which take any preset
register_backbone_kind(KerasModelBackbone)
register_backbone_kind(EmbeddingsBackbone, first=True)  # before KerasModelBackbone: it is a Model
register_backbone_kind(VectorModelBackbone, first=True)  # a Model on vectors, not images


def resolve_backbone(backbone, **options):
    """Returns the registered backbone kind instance for `backbone` (see `backbones.base`).

    Args:
        backbone: str, keras.Model, keras-hub Backbone or path.
        **options: `weights`, `input_shape`, `preprocessing`, `policy`,
            `architecture` and kind-specific options.

    Returns:
        A `BackboneKind` instance.

    Raises:
        ValueError: no kind accepts `backbone`; for a name, with the closest
            `keras.applications` names and keras-hub presets.
    """
    try:
        return _resolve(backbone, **options)
    except NoBackboneKind as unknown:
        if not isinstance(backbone, str):
            raise
        try:  # an unknown name: the table's suggestions, and close keras-hub presets
            get_application(backbone)
        except ValueError as error:
            presets = close_preset_names(backbone)
            hint = f" Close keras-hub presets: {', '.join(presets)}." if presets else ""
            raise ValueError(f"{error}{hint}") from None
        raise unknown


__all__ = [
    "APPLICATIONS",
    "ApplicationsBackbone",
    "AudioBackbone",
    "BACKBONE_OUTPUTS",
    "BackboneKind",
    "BackboneSpec",
    "NoBackboneKind",
    "Seq2SeqBackbone",
    "BlockPattern",
    "Embeddings",
    "EmbeddingsBackbone",
    "IdEmbedding",
    "ImageBackbone",
    "KerasHubImageBackbone",
    "KerasModelBackbone",
    "TextEncoderBackbone",
    "VectorModelBackbone",
    "backbone_kinds",
    "block_groups",
    "get_application",
    "pyramid_layers",
    "register_backbone_kind",
    "resolve_backbone",
    "CategoricalFeature",
    "TextFeature",
    "encode_texts",
]
