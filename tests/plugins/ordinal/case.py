"""How the shared harness checks build the ordinal head and its targets (tests/test_custom_head.py)."""


from tests.plugins.ordinal.head import OrdinalHead


def make():
    return OrdinalHead(4)


def targets(rng, inputs):
    return rng.integers(0, 4, len(inputs))


MODALITIES = ("image", "text")
