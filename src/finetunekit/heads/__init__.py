from finetunekit.heads.base import Head, pool_features
from finetunekit.heads.classification import ClassificationHead
from finetunekit.heads.regression import RegressionHead
from finetunekit.heads.token_classification import (
    TokenClassificationHead,
    entity_scores,
    entity_spans,
    read_conll,
)

__all__ = [
    "ClassificationHead",
    "Head",
    "RegressionHead",
    "TokenClassificationHead",
    "entity_scores",
    "entity_spans",
    "pool_features",
    "read_conll",
]
