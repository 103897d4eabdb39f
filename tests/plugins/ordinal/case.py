"""The ordinal family's case in the shared harness: how to build its head and targets.

`tests/harness.py` finds this file (every `tests/plugins/*/case.py`), imports the
family's `plugin.py` first, and runs `CASE` through the same checks as the
built-in heads (tests/test_harness.py).
"""

from tests.harness import HeadCase, same_outputs
from tests.plugins.ordinal.head import OrdinalHead


def make():
    return OrdinalHead(4)


def targets(rng, inputs):
    return rng.integers(0, 4, len(inputs))


#: A pooled head: it runs on every kind with features; one small backbone case keeps the
#: default test run short.
CASE = HeadCase(make, targets, modalities=("image", "text", "ids", "vector", "audio"),
                backbones=("keras_model",),
                served=same_outputs)
