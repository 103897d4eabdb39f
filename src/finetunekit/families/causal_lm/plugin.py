"""The causal-LM family's plugin: what it registers with finetunekit (see `finetunekit.core.family`)."""

from finetunekit.core.family import Family, register_family
from finetunekit.families.causal_lm.head import InstructionHead
from finetunekit.families.causal_lm.kind import CausalLMBackbone

register_family(Family(
    "causal_lm", "instruction fine-tuning of decoder-only language models (chat, generation)",
    kinds=(CausalLMBackbone,), heads=(InstructionHead,),
))
