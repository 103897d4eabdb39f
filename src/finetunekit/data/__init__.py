from finetunekit.data.images import BadImageError, check_images, list_image_folder

__all__ = ["BadImageError", "check_images", "list_image_folder"]
