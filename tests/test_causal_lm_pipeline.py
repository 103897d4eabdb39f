"""The InstructionHead pipeline: sample weights that follow the examples kept, tf.data records."""

import warnings

import numpy as np
import pytest
import tensorflow as tf

import finetunekit as fk
from tests.causal_lm_fixtures import FACTS, tiny_llama

LONG = {"prompt": "hello " * 30, "completion": "ok."}


def tuner(**options):
    head = options.pop("head", None) or fk.InstructionHead()
    return fk.FineTuner(backbone=tiny_llama(), head=head, unfreeze="all", **options)


def batch(lm, records, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = lm.prepare(records, batch_size=16, **options)
    x, y, w = next(iter(prepared.train.x))
    return x, np.asarray(y), np.asarray(w)


def row_weights(x, w):
    """The per-example weight of each row: its token weights over its trained tokens."""
    trained = (w > 0).sum(axis=1)
    return np.where(trained > 0, w.sum(axis=1) / np.maximum(trained, 1), 0.0)


def masked_loss(lm, x, y, w):
    """The head's loss, with the logits of row i sharpened i times, so rows' losses differ."""
    logits = np.asarray(lm(x))
    sharpen = 2.0 * np.arange(len(y))[:, None, None] * np.eye(logits.shape[-1])[y]
    return float(lm.head.default_loss()(y, logits + sharpen, sample_weight=w))


def test_sample_weights_follow_the_examples_kept_when_one_is_dropped():
    lm = tuner(sequence_length=48, head=fk.InstructionHead(on_too_long="drop"))
    records = [{"prompt": "x", "completion": "hello " * 30}, *FACTS]  # the first is dropped
    weights = np.asarray([9.0, 4.0, 0.0, 1.0, 2.0], "float32")
    x, y, w = batch(lm, records, sample_weight=weights)
    assert len(y) == 4
    np.testing.assert_allclose(row_weights(x, w), weights[1:])
    # the same loss as the kept records with their own weights, not with the weights shifted
    loss = masked_loss(lm, x, y, w)
    assert loss == pytest.approx(masked_loss(lm, *batch(lm, FACTS, sample_weight=weights[1:])),
                                 rel=1e-5)
    assert loss != pytest.approx(masked_loss(lm, *batch(lm, FACTS, sample_weight=weights[:-1])),
                                 rel=1e-3)
    lm.compile(learning_rate=1e-2)
    with pytest.warns(UserWarning, match="dropped"):
        history = lm.fit(records, sample_weight=weights, epochs=1, batch_size=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


def test_truncated_examples_keep_their_own_weights():
    lm = tuner(sequence_length=48)
    records = [FACTS[0], {"prompt": "hello " * 30, "completion": "ok " * 30}, *FACTS[1:]]
    weights = np.asarray([1.0, 9.0, 0.0, 3.0, 2.0], "float32")
    x, y, w = batch(lm, records, sample_weight=weights)
    assert len(y) == 5
    np.testing.assert_allclose(row_weights(x, w), weights)
    with pytest.raises(ValueError, match="has 4 values but the data has 5 examples"), \
            pytest.warns(UserWarning, match="cut on the left"):
        lm.prepare(records, sample_weight=weights[:4])


@pytest.mark.parametrize("batched", [False, True])
def test_a_dataset_of_records_batched_or_not_gives_the_same_batches(batched):
    lm = tuner()
    ds = tf.data.Dataset.from_tensor_slices({
        "prompt": [r["prompt"] for r in FACTS], "completion": [r["completion"] for r in FACTS],
    })
    if batched:
        ds = ds.batch(3)
    x, y, w = batch(lm, ds)
    xl, yl, wl = batch(lm, FACTS)
    np.testing.assert_array_equal(np.asarray(x["token_ids"]), np.asarray(xl["token_ids"]))
    np.testing.assert_array_equal(y, yl)
    np.testing.assert_array_equal(w, wl)
    lm.compile(learning_rate=1e-2)
    history = lm.fit(ds, epochs=1, batch_size=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


def test_a_dataset_of_tuples_is_refused_with_the_fix():
    lm = tuner()
    ds = tf.data.Dataset.from_tensor_slices(([r["prompt"] for r in FACTS],
                                             [r["completion"] for r in FACTS]))
    with pytest.raises(ValueError, match="must yield record dicts.*ds.map"):
        lm.fit(ds, epochs=1, verbose=0)
