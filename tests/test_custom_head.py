"""A new task family is one folder: the ordinal-regression plugin in tests/plugins/ordinal.

The folder holds the head (`head.py`), its shared-harness case (`case.py`, which
tests/harness.py discovers) and one registration line (`plugin.py`); nothing in
finetunekit or in the harness changes.
"""

import numpy as np

import finetunekit as fk
from finetunekit.core.family import families, head_classes
from tests.conftest import tiny_cnn
from tests.harness import HEAD_CASES
from tests.plugins.ordinal import case, plugin  # noqa: F401 - plugin registers the family
from tests.plugins.ordinal.head import OrdinalHead


def test_the_plugin_family_is_registered_and_its_head_is_public():
    assert families()["ordinal"].heads == (OrdinalHead,)
    assert HEAD_CASES["OrdinalHead"] is case.CASE  # the shared harness found its case
    assert head_classes()["OrdinalHead"] is OrdinalHead
    assert fk.OrdinalHead is OrdinalHead and fk.heads.OrdinalHead is OrdinalHead


def test_ordinal_head_fits_saves_and_reloads(tmp_path):
    rng = np.random.default_rng(0)
    levels = np.repeat(np.arange(4), 8)
    # Brighter images are higher levels: a learnable ordinal signal.
    x = (levels[:, None, None, None] * 60 + rng.integers(0, 20, (32, 16, 16, 3))).astype("uint8")
    ft = fk.FineTuner(tiny_cnn(), case.make(), preprocessing="zero_one", unfreeze="all")
    assert isinstance(ft.head, fk.OrdinalHead)
    encoded, _ = ft.head.encode_targets(levels)
    assert encoded[5].tolist() == [0, 0, 0] and encoded[-1].tolist() == [1, 1, 1]
    ft.compile(learning_rate=3e-2)
    before = np.mean(np.abs(np.asarray(ft.predict_labels(x)) - levels))
    ft.fit(x, levels, epochs=25, batch_size=8, verbose=0)
    after = np.mean(np.abs(np.asarray(ft.predict_labels(x)) - levels))
    assert after < before and after <= 0.5, (before, after)
