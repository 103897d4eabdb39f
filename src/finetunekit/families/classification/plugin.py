"""The classification family's plugin: what it registers with finetunekit (see `finetunekit.core.family`)."""

from finetunekit.core.family import Family, register_family
from finetunekit.families.classification.classification import ClassificationHead
from finetunekit.families.classification.regression import RegressionHead

register_family(Family(
    "classification", "classification and regression on pooled features",
    heads=(ClassificationHead, RegressionHead),
))
