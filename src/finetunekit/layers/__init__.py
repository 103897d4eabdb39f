from finetunekit.layers.augmentation import (
    AUGMENT_KEYWORDS,
    RandomChannelShift,
    build_augmentation,
)
from finetunekit.layers.image_preprocessing import ImageFormatter, ImageNormalization
from finetunekit.layers.text_augmentation import TEXT_AUGMENT_KEYWORDS, TextAugmentation

__all__ = [
    "AUGMENT_KEYWORDS",
    "ImageFormatter",
    "ImageNormalization",
    "RandomChannelShift",
    "TEXT_AUGMENT_KEYWORDS",
    "TextAugmentation",
    "build_augmentation",
]
