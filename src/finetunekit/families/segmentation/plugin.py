"""The segmentation family's plugin: what it registers with finetunekit (see `finetunekit.core.family`)."""

from finetunekit.core.family import Family, register_family
from finetunekit.families.segmentation.head import SegmentationHead

register_family(Family(
    "segmentation", "semantic segmentation: one class per pixel",
    heads=(SegmentationHead,),
))
