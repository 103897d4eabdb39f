from finetunekit.data.detection_readers import read_detection_data
from finetunekit.data.images import BadImageError, check_images, list_image_folder
from finetunekit.data.interactions import read_interactions, temporal_split
from finetunekit.data.pipeline import Batches, Prepared
from finetunekit.data.seq2seq_pipeline import read_pairs
from finetunekit.data.text_readers import read_conll
from finetunekit.data.tfds import TFDS

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
