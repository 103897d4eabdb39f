"""Task heads (the public `fk.heads` namespace); each lives in its family's folder."""

from finetunekit.core.head import TARGET_LAYOUTS, Head
from finetunekit.core.pooled import PooledHead, Pooling, pool_features
from finetunekit.core.reports import Report
from finetunekit.families.causal_lm.head import InstructionHead
from finetunekit.families.classification.classification import ClassificationHead
from finetunekit.families.classification.regression import RegressionHead
from finetunekit.families.detection.head import DetectionHead
from finetunekit.families.detection.loss import DetectionLoss
from finetunekit.families.recommendation.ranking import RankingHead
from finetunekit.families.recommendation.retrieval import RetrievalHead
from finetunekit.families.segmentation.head import SegmentationHead
from finetunekit.families.segmentation.loss import SegmentationLoss
from finetunekit.families.seq2seq.head import Seq2SeqHead, text_report
from finetunekit.families.speech.head import SpeechToTextHead
from finetunekit.families.text.ner import TokenClassificationHead, entity_scores, entity_spans

__all__ = [
    "ClassificationHead",
    "DetectionHead",
    "DetectionLoss",
    "Head",
    "InstructionHead",
    "PooledHead",
    "Pooling",
    "RankingHead",
    "RegressionHead",
    "RetrievalHead",
    "Report",
    "SpeechToTextHead",
    "Seq2SeqHead",
    "TARGET_LAYOUTS",
    "TokenClassificationHead",
    "SegmentationHead",
    "SegmentationLoss",
    "entity_scores",
    "entity_spans",
    "pool_features",
    "text_report",
]


def __getattr__(name):
    """A head of a plugin family (registered with `register_family`), by class name."""
    from finetunekit.core.family import head_classes

    heads = head_classes()
    if name in heads:
        return heads[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
