"""The ordinal family's registration: the one line that adds it to finetunekit."""

from finetunekit.core.family import Family, register_family
from tests.plugins.ordinal.head import OrdinalHead

register_family(Family("ordinal", "ordinal regression: ordered levels", heads=(OrdinalHead,)))
