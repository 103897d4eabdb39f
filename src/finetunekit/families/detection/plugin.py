"""The detection family's plugin: what it registers with finetunekit (see `finetunekit.core.family`)."""

from finetunekit.core.family import Family, register_family
from finetunekit.families.detection.head import DetectionHead

register_family(Family(
    "detection", "object detection: boxes and classes",
    heads=(DetectionHead,),
))
