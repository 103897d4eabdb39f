from finetunekit.data.images import BadImageError, check_images, list_image_folder
from finetunekit.data.tfds import TFDS

__all__ = ["TFDS", "BadImageError", "check_images", "list_image_folder"]
