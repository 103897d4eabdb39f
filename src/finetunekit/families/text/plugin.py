"""The text family's plugin: what it registers with finetunekit (see `finetunekit.core.family`)."""

from finetunekit.core.augmentation import register_augmentation
from finetunekit.core.family import Family, register_family
from finetunekit.families.text.augmentation import (
    TEXT_AUGMENT_KEYWORDS,
    build_text_augmentation,
    is_text_augment,
)
from finetunekit.families.text.kind import TextEncoderBackbone
from finetunekit.families.text.ner import TokenClassificationHead

register_augmentation("text", TEXT_AUGMENT_KEYWORDS, build_text_augmentation,
                      matches=is_text_augment)
register_family(Family(
    "text", "text encoders: classification, regression and NER",
    kinds=(TextEncoderBackbone,), heads=(TokenClassificationHead,),
))
