"""Readers and splits (the public `fk.data` namespace); each lives in core or in its family."""

from finetunekit.core.data.images import BadImageError, check_images, list_image_folder
from finetunekit.core.data.pipeline import Batches, Prepared
from finetunekit.core.data.text_readers import read_conll
from finetunekit.core.data.tfds import TFDS
from finetunekit.families.detection.readers import read_detection_data
from finetunekit.families.recommendation.interactions import read_interactions, temporal_split
from finetunekit.families.seq2seq.pipeline import read_pairs

__all__ = [
    "TFDS",
    "BadImageError",
    "Batches",
    "Prepared",
    "check_images",
    "list_image_folder",
    "read_conll",
    "read_detection_data",
    "read_interactions",
    "temporal_split",
    "read_pairs",
]
