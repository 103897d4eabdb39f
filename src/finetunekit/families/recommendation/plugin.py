"""The recommendation family's plugin: what it registers with finetunekit (see `finetunekit.core.family`)."""

from finetunekit.core.family import Family, register_family
from finetunekit.families.recommendation.kind import EmbeddingsBackbone
from finetunekit.families.recommendation.ranking import RankingHead
from finetunekit.families.recommendation.retrieval import RetrievalHead

register_family(Family(
    "recommendation", "recommendation: retrieval and ranking of items for users",
    kinds=(EmbeddingsBackbone,), heads=(RetrievalHead, RankingHead),
))
