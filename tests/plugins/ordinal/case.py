"""The ordinal family's entry in the shared test harness (found by `tests/harness.py`)."""


from tests.plugins.ordinal.head import OrdinalHead


def make():
    return OrdinalHead(4)


def targets(rng, inputs):
    return rng.integers(0, 4, len(inputs))


MODALITIES = ("image", "text")
