from finetunekit.heads.base import TARGET_LAYOUTS, Head
from finetunekit.heads.classification import ClassificationHead
from finetunekit.heads.detection import DetectionHead
from finetunekit.heads.detection_loss import DetectionLoss
from finetunekit.heads.pooled import PooledHead, Pooling, pool_features
from finetunekit.heads.ranking import RankingHead
from finetunekit.heads.regression import RegressionHead
from finetunekit.heads.retrieval import RetrievalHead
from finetunekit.heads.scores import Report
from finetunekit.heads.segmentation import SegmentationHead
from finetunekit.heads.segmentation_scores import SegmentationLoss
from finetunekit.heads.seq2seq import Seq2SeqHead, text_report
from finetunekit.heads.speech import SpeechToTextHead
from finetunekit.heads.token_classification import (
    TokenClassificationHead,
    entity_scores,
    entity_spans,
)

__all__ = [
    "ClassificationHead",
    "DetectionHead",
    "DetectionLoss",
    "Head",
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
