"""The speech family's plugin: what it registers with finetunekit (see `finetunekit.core.family`)."""

from finetunekit.core.augmentation import register_augmentation
from finetunekit.core.family import Family, register_family
from finetunekit.families.speech.augmentation import (
    AUDIO_AUGMENT_KEYWORDS,
    audio_augmentation,
    is_audio_augment,
)
from finetunekit.families.speech.head import SpeechToTextHead
from finetunekit.families.speech.kind import AudioBackbone

register_augmentation("audio", AUDIO_AUGMENT_KEYWORDS, audio_augmentation,
                      matches=is_audio_augment)
register_family(Family(
    "speech", "speech: keyword spotting and speech to text on Whisper / Moonshine",
    kinds=(AudioBackbone,), heads=(SpeechToTextHead,),
))
