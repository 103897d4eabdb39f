from finetunekit.heads.base import TARGET_LAYOUTS, Head
from finetunekit.heads.classification import ClassificationHead
from finetunekit.heads.pooled import PooledHead, Pooling, pool_features
from finetunekit.heads.regression import RegressionHead
from finetunekit.heads.scores import Report
from finetunekit.heads.seq2seq import Seq2SeqHead, text_report
from finetunekit.heads.token_classification import (
    TokenClassificationHead,
    entity_scores,
    entity_spans,
)

__all__ = [
    "ClassificationHead",
    "Head",
    "PooledHead",
    "Pooling",
    "RegressionHead",
    "Report",
    "Seq2SeqHead",
    "TARGET_LAYOUTS",
    "TokenClassificationHead",
    "entity_scores",
    "entity_spans",
    "pool_features",
    "text_report",
]
