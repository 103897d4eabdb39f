from finetunekit.layers.audio import AudioFeaturizer, WaveformConverter
from finetunekit.layers.audio_augmentation import (
    AUDIO_AUGMENT_KEYWORDS,
    SpecMask,
    WaveformAugmentation,
)
from finetunekit.layers.augmentation import (
    AUGMENT_KEYWORDS,
    RandomChannelShift,
    build_augmentation,
)
from finetunekit.layers.image_preprocessing import ImageFormatter, ImageNormalization
from finetunekit.layers.text_augmentation import TEXT_AUGMENT_KEYWORDS, TextAugmentation

__all__ = [
    "AUDIO_AUGMENT_KEYWORDS",
    "AudioFeaturizer",
    "AUGMENT_KEYWORDS",
    "ImageFormatter",
    "ImageNormalization",
    "RandomChannelShift",
    "SpecMask",
    "WaveformAugmentation",
    "WaveformConverter",
    "TEXT_AUGMENT_KEYWORDS",
    "TextAugmentation",
    "build_augmentation",
]
