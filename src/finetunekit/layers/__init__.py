"""Preprocessing and augmentation layers (the public `fk.layers` namespace); each lives in its family."""

from finetunekit.core.augmentation import build_augmentation
from finetunekit.families.image.augmentation import AUGMENT_KEYWORDS, RandomChannelShift
from finetunekit.families.image.preprocessing import ImageFormatter, ImageNormalization
from finetunekit.families.speech.augmentation import (
    AUDIO_AUGMENT_KEYWORDS,
    SpecMask,
    WaveformAugmentation,
)
from finetunekit.families.speech.layers import AudioFeaturizer, WaveformConverter
from finetunekit.families.text.augmentation import TEXT_AUGMENT_KEYWORDS, TextAugmentation

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
