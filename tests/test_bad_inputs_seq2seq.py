"""The bad-input catalogue, issue 12: head regularisation, early stopping, text augmentation, seq2seq.

One row per case: `(id, run, error, fragment)`, as in `tests/test_bad_inputs.py`.
The same rows are in docs/errors.md ("Sequence to sequence, text augmentation and regularisation").
"""

import keras
import numpy as np
import pytest

import finetunekit as fk
from tests.catalogue import undocumented
from tests.conftest import tiny_tuner

X4 = np.zeros((4, 16, 16, 3), "uint8")
SECTION = "Sequence to sequence, text augmentation and regularisation"


def fit(**kwargs):
    return tiny_tuner().fit(X4, ["cat", "dog", "cat", "dog"], epochs=1, verbose=0, **kwargs)


# fmt: off
CASES = [
    ("regularizer_and_l2_together", lambda t: fk.ClassificationHead(2, kernel_regularizer=keras.regularizers.L2(0.1), l2=0.1), ValueError, r"Pass either kernel_regularizer=\.\.\. or l1=/l2="),
    ("negative_l2", lambda t: fk.RegressionHead(l2=-1.0), ValueError, r"`l2` must be a number >= 0\. Received: l2=-1\.0"),
    ("unknown_regularizer_name", lambda t: fk.ClassificationHead(2, kernel_regularizer="l3"), ValueError, r"`kernel_regularizer` must be a Keras regularizer such as keras\.regularizers\.L2\(1e-4\)"),
    ("early_stopping_without_validation", lambda t: fit(early_stopping=3), ValueError, r"early_stopping=3 watches the validation loss, but this fit has no validation data\. Pass validation_split=0\.1"),
    ("early_stopping_not_a_patience", lambda t: fit(early_stopping=True), ValueError, r"`early_stopping` is the patience in epochs \(a positive int, e\.g\. early_stopping=3\) or None"),
]
# fmt: on


@pytest.mark.parametrize("case_id,run,error,fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input(tmp_path, case_id, run, error, fragment):
    with pytest.raises(error, match=fragment):
        run(tmp_path)


def test_rows_are_documented():
    assert undocumented([c[0] for c in CASES], SECTION) == []
