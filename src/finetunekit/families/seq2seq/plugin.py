"""The seq2seq family's plugin: what it registers with finetunekit (see `finetunekit.core.family`)."""

from finetunekit.core.family import Family, register_family
from finetunekit.families.seq2seq import warm_start  # noqa: F401 - fk.load finds WarmStartBackbone
from finetunekit.families.seq2seq.head import Seq2SeqHead
from finetunekit.families.seq2seq.kind import Seq2SeqBackbone

register_family(Family(
    "seq2seq", "text to text: translation, summarisation",
    kinds=(Seq2SeqBackbone,), heads=(Seq2SeqHead,),
))
