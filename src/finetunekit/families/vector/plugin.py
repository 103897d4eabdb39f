"""The vector family's plugin: what it registers with finetunekit (see `finetunekit.core.family`)."""

from finetunekit.core.family import Family, register_family
from finetunekit.families.vector.kind import VectorModelBackbone

register_family(Family(
    "vector", "a Keras model on feature vectors (states, tabular rows)",
    kinds=(VectorModelBackbone,),
))
