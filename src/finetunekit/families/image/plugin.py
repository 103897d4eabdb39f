"""The image family's plugin: what it registers with finetunekit (see `finetunekit.core.family`)."""

from finetunekit.core.augmentation import register_augmentation
from finetunekit.core.family import Family, register_family
from finetunekit.families.image.augmentation import AUGMENT_KEYWORDS, image_augmentation
from finetunekit.families.image.hub_image import KerasHubImageBackbone
from finetunekit.families.image.kinds import ApplicationsBackbone, KerasModelBackbone

register_augmentation("image", AUGMENT_KEYWORDS, image_augmentation, default=True)
register_family(Family(
    "image", "images: keras.applications, keras-hub image backbones, your own model",
    kinds=(ApplicationsBackbone, KerasHubImageBackbone, KerasModelBackbone),
))
