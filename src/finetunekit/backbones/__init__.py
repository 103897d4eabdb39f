"""Backbone kinds: what `FineTuner(backbone=...)` accepts (the public `fk.backbones` namespace).

Each kind lives in its family's folder (`finetunekit.families.*`) and registers
itself there; this module only re-exports the public names.
"""

from finetunekit.core.kind import (
    BACKBONE_OUTPUTS,
    BackboneKind,
    NoBackboneKind,
    backbone_kinds,
    register_backbone_kind,
    resolve_backbone,
)
from finetunekit.families.causal_lm.kind import CausalLMBackbone
from finetunekit.families.image.applications import (
    APPLICATIONS,
    BackboneSpec,
    BlockPattern,
    block_groups,
    get_application,
)
from finetunekit.families.image.hub_image import KerasHubImageBackbone
from finetunekit.families.image.kinds import (
    ApplicationsBackbone,
    ImageBackbone,
    KerasModelBackbone,
    pyramid_layers,
)
from finetunekit.families.recommendation.kind import Embeddings, EmbeddingsBackbone, IdEmbedding
from finetunekit.families.recommendation.side_features import (
    CategoricalFeature,
    TextFeature,
    encode_texts,
)
from finetunekit.families.seq2seq.kind import Seq2SeqBackbone
from finetunekit.families.speech.kind import AudioBackbone
from finetunekit.families.text.kind import TextEncoderBackbone
from finetunekit.families.vector.kind import VectorModelBackbone

__all__ = [
    "APPLICATIONS",
    "ApplicationsBackbone",
    "AudioBackbone",
    "BACKBONE_OUTPUTS",
    "BackboneKind",
    "BackboneSpec",
    "NoBackboneKind",
    "Seq2SeqBackbone",
    "CausalLMBackbone",
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
