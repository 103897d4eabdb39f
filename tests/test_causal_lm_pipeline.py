"""The InstructionHead pipeline: sample weights that follow the examples kept, tf.data records."""

import warnings

import numpy as np
import pytest
import tensorflow as tf

import finetunekit as fk
from tests.causal_lm_fixtures import FACTS, logits_of, tiny_llama

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


RECORDS = [*FACTS, {"prompt": "hello", "completion": "use tea."},
           {"messages": [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi."},
                         {"role": "user", "content": "who?"}, {"role": "assistant", "content": "tom."}]}]


def segments(x):
    """`(row, start, end)` of every example in packed rows, from their segment ids."""
    seg = np.asarray(x["segment_ids"])
    found = []
    for row in range(len(seg)):
        for value in sorted(set(seg[row].tolist()) - {0}):
            where = np.flatnonzero(seg[row] == value)
            assert (np.diff(where) == 1).all()
            found.append((row, int(where[0]), int(where[-1]) + 1))
    return found


def alone(lm, ids):
    """keras-hub's own CausalLM logits of one example (no packing code involved)."""
    return logits_of(lm.backbone_kind.task, ids)


@pytest.fixture(scope="module")
def packed_lm():
    lm = tuner(head=fk.InstructionHead(packing=True))
    lm.compile(learning_rate=1e-2)
    history = lm.fit(RECORDS, epochs=3, batch_size=2, verbose=0, seed=0)
    assert np.isfinite(history.history["loss"]).all()
    return lm


def test_packed_rows_give_each_example_its_logits_alone_through_the_fitted_model(packed_lm, tmp_path):
    lm = packed_lm
    x, y, w = batch(lm, RECORDS, training=True)
    assert len(y) < len(RECORDS)  # several examples share a row
    logits = np.asarray(lm(x))
    found = segments(x)
    assert len(found) == len(RECORDS)
    ids = np.asarray(x["token_ids"])
    for row, start, end in found:
        np.testing.assert_array_equal(np.asarray(x["position_ids"])[row, start:end],
                                      np.arange(end - start))
        np.testing.assert_allclose(logits[row, start:end], alone(lm, ids[row, start:end]),
                                   atol=1e-4)
    path = str(tmp_path / "packed.keras")
    lm.save(path)
    loaded = fk.load(path)
    assert loaded.head.packing
    np.testing.assert_allclose(np.asarray(loaded(x)), logits, atol=1e-5)


def test_packed_loss_is_the_token_weighted_mean_of_the_losses_alone(packed_lm):
    lm = packed_lm
    loss = lm.head.default_loss()
    x, y, w = batch(lm, RECORDS, training=True)
    packed = float(loss(y, np.asarray(lm(x)), sample_weight=w))
    xs, ys, ws = batch(lm, RECORDS)  # one example a row, in order
    total = count = 0.0
    for row in range(len(ys)):
        n = int(np.asarray(xs["segment_ids"])[row].sum())
        own = alone(lm, np.asarray(xs["token_ids"])[row, :n])
        trained = ws[row, :n].sum()
        total += float(loss(ys[row : row + 1, :n], own[None], sample_weight=ws[row : row + 1, :n])) * trained
        count += trained
    assert w.sum() == pytest.approx(count)
    assert packed == pytest.approx(total / count, rel=1e-4)
    scores = lm.evaluate(RECORDS, return_dict=True, verbose=0)
    assert scores["loss"] == pytest.approx(total / count, rel=1e-4)


def test_packing_with_sample_weights_weights_each_example():
    lm = tuner(head=fk.InstructionHead(packing=True))
    weights = np.asarray([1.0, 0.0, 3.0, 2.0, 0.5, 4.0], "float32")
    x, y, w = batch(lm, RECORDS, training=True, sample_weight=weights)
    xs, ys, ws = batch(lm, RECORDS, sample_weight=weights)
    # the packed rows hold the same weighted tokens as the rows of one example
    assert sorted(np.round(w[w > 0], 4).tolist()) == sorted(np.round(ws[ws > 0], 4).tolist())
    found = segments(x)
    assert sorted(round(float(w[r, s:e].max()), 4) for r, s, e in found if w[r, s:e].any()) == \
        sorted(round(float(v), 4) for v in weights if v > 0)


def tiny_gpt2():
    import keras_hub

    vocabulary = {"<|endoftext|>": 0, **{c: i + 1 for i, c in enumerate("abcdefghijklmnopqrstuvwxyzĠ?.")},
                  "ab": 30}
    tokenizer = keras_hub.models.GPT2Tokenizer(vocabulary=vocabulary, merges=["a b"])
    backbone = keras_hub.models.GPT2Backbone(vocabulary_size=len(vocabulary), num_layers=1, num_heads=1,
                                             hidden_dim=8, intermediate_dim=16, max_sequence_length=64)
    preprocessor = keras_hub.models.GPT2CausalLMPreprocessor(tokenizer=tokenizer, sequence_length=32)
    return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=preprocessor)


def test_packing_is_refused_for_a_backbone_without_a_block_diagonal_mask():
    with pytest.raises(ValueError, match=r"packing=True.*GPT2Backbone cannot.*packing=False"):
        fk.FineTuner(backbone=tiny_gpt2(), head=fk.InstructionHead(packing=True), unfreeze="all")
    lm = fk.FineTuner(backbone=tiny_gpt2(), head=fk.InstructionHead(chat_template="chatml"),
                      unfreeze="all")
    assert lm.backbone_kind.packing is False


VARIED = [{"prompt": "hello " * ((7 * i) % 10) + f"q{chr(97 + i % 26)}{chr(97 + i // 26)}?",
           "completion": "use tea." if i % 2 else "rex."} for i in range(64)]


def epoch(lm, padding):
    prepared = lm.prepare(VARIED, batch_size=4, shuffle=True, seed=1, padding=padding,
                          training=True)
    padded, seen = 0, []
    for x, y, w in prepared.train.x:
        ids, mask = np.asarray(x["token_ids"]), np.asarray(x["padding_mask"]).astype(bool)
        y, w = np.asarray(y), np.asarray(w)
        padded += int((~mask).sum())
        # each example with its own labels and loss mask
        seen += [(tuple(i[m].tolist()), tuple(t[m].tolist()), tuple(v[m].tolist()))
                 for i, t, v, m in zip(ids, y, w, mask)]
    return padded, sorted(seen), len(prepared.train.x)


def test_length_buckets_pad_less_and_show_every_example_once_an_epoch():
    lm = tuner(sequence_length=96)
    dynamic, every, batches = epoch(lm, "dynamic")
    bucket, seen, bucket_batches = epoch(lm, "bucket")
    assert bucket < dynamic
    assert seen == every and len(seen) == len(VARIED) and bucket_batches == batches == 16
    # shuffle is kept: the order of batches changes from one epoch to the next
    prepared = lm.prepare(VARIED, batch_size=4, shuffle=True, padding="bucket", training=True)
    orders = [[tuple(np.asarray(x["token_ids"])[:, 0:12].ravel().tolist()) for x, _, _ in
               prepared.train.x] for _ in range(4)]
    assert len({tuple(order) for order in orders}) > 1
    lm.compile(learning_rate=1e-2)
    history = lm.fit(VARIED[:16], epochs=1, batch_size=4, padding="bucket", verbose=0)
    assert np.isfinite(history.history["loss"]).all()


@pytest.mark.parametrize("head, padding, match", [
    (fk.InstructionHead(), "fixed", 'padding="fixed" is not supported'),
    (fk.InstructionHead(packing=True), "bucket", "packs training examples into rows"),
])
def test_unsupported_padding_is_refused(head, padding, match):
    lm = tuner(head=head)
    with pytest.raises(ValueError, match=match):
        lm.fit(FACTS, epochs=1, padding=padding, verbose=0)


@pytest.mark.slow  # default-run budget; runs with -m slow
def test_packing_trains_lora_factors_over_an_int8_base():
    lm = fk.FineTuner(backbone=tiny_llama(), head=fk.InstructionHead(packing=True), unfreeze=0,
                      lora_rank=2, quantize="int8")
    before = {v.path: np.asarray(v).copy() for v in lm.weights}
    lm.compile(learning_rate=1e-2)
    history = lm.fit(RECORDS, epochs=1, batch_size=2, verbose=0, validation_split=0.34, seed=0)
    assert np.isfinite(history.history["loss"]).all() and "val_loss" in history.history
    changed = {v.path for v in lm.weights if not np.array_equal(before[v.path], np.asarray(v))}
    assert changed and all("lora" in path for path in changed)
