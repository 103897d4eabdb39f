from finetunekit.layers.augmentation import (
    AUGMENT_KEYWORDS,
    RandomChannelShift,
    build_augmentation,
)
from finetunekit.layers.image_preprocessing import ImageFormatter, ImageNormalization

__all__ = [
    "AUGMENT_KEYWORDS",
    "ImageFormatter",
    "ImageNormalization",
    "RandomChannelShift",
    "build_augmentation",
]
