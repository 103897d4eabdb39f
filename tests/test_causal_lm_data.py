"""SFT token ids and loss masks, truncation, packing and packed Llama logits."""

import warnings

import numpy as np
import pytest

from finetunekit.families.causal_lm.chat_template import ChatTemplate
from finetunekit.families.causal_lm.packing import (
    block_diagonal_causal_mask,
    pack_examples,
    packed_logits,
)
from finetunekit.families.causal_lm.records import to_examples
from finetunekit.families.causal_lm.tokenization import (
    TokenizedExample,
    TruncationReport,
    encode_texts,
    pad_examples,
    shift_for_causal_lm,
    tokenize_examples,
)

SPECIALS = [
    "<|im_start|>",
    "<|im_end|>",
    "<|begin_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
]
MERGES = ["u s", "us e", "use r", "a s", "as s", "ass i", "assi s", "assis t", "assist a",
          "assista n", "assistan t", "h e", "l l", "he ll", "hell o"]  # fmt: skip


def byte_bpe(specials=SPECIALS, alphabet=None):
    """A byte-level BPE tokenizer: id 0 is padding, then the special tokens, the bytes, merges."""
    import keras_hub
    from keras_hub.src.tokenizers.byte_pair_tokenizer import bytes_to_unicode

    _, byte_chars = bytes_to_unicode()
    vocab = {token: i for i, token in enumerate(["<pad>", *specials])}
    for char in byte_chars if alphabet is None else alphabet:
        vocab.setdefault(char, len(vocab))
    merges = []
    for merge in MERGES:  # in rank order; a merge needs both parts in the vocabulary
        if all(part in vocab for part in merge.split()):
            merges.append(merge)
            vocab.setdefault(merge.replace(" ", ""), len(vocab))
    return keras_hub.tokenizers.BytePairTokenizer(
        vocabulary=vocab, merges=merges, unsplittable_tokens=list(specials)
    )


@pytest.fixture(scope="module")
def tokenizer():
    return byte_bpe()


def chat(*turns, system=None):
    messages = [{"role": "system", "content": system}] if system else []
    for i, content in enumerate(turns):
        messages.append({"role": "user" if i % 2 == 0 else "assistant", "content": content})
    return messages


def trained_text(tokenizer, example):
    return tokenizer.detokenize([int(t) for t, m in zip(example.token_ids, example.loss_mask) if m])


def test_multi_turn_trains_every_assistant_turn_and_no_user_turn(tokenizer):
    conv = chat("hello there", "Hi!", "what now", "Sleep.", system="Be kind")
    [ex], report = tokenize_examples([conv], tokenizer, "chatml")
    assert trained_text(tokenizer, ex) == "Hi!<|im_end|>Sleep.<|im_end|>"
    assert tokenizer.detokenize(ex.token_ids.tolist()) == ChatTemplate("chatml").render(conv)
    # every trained run is exactly an assistant content plus <|im_end|>
    im_end = tokenizer.token_to_id("<|im_end|>")
    runs = np.split(ex.token_ids, np.flatnonzero(np.diff(ex.loss_mask)) + 1)
    masks = np.split(ex.loss_mask, np.flatnonzero(np.diff(ex.loss_mask)) + 1)
    trained = [r for r, m in zip(runs, masks) if m[0]]
    assert [tokenizer.detokenize(r.tolist()) for r in trained] == [
        "Hi!<|im_end|>",
        "Sleep.<|im_end|>",
    ]
    assert all(r[-1] == im_end for r in trained)
    assert report.kept == 1 and report.message() is None


def test_changing_a_prompt_token_leaves_the_trained_tokens_unchanged(tokenizer):
    a, _ = tokenize_examples([chat("pick a", "Done.")], tokenizer, "chatml")
    b, _ = tokenize_examples([chat("pick b", "Done.")], tokenizer, "chatml")
    a, b = a[0], b[0]
    assert len(a) == len(b)
    differs = np.flatnonzero(a.token_ids != b.token_ids)
    assert differs.size == 1 and a.loss_mask[differs[0]] == 0
    np.testing.assert_array_equal(a.loss_mask, b.loss_mask)
    np.testing.assert_array_equal(a.token_ids[a.loss_mask == 1], b.token_ids[b.loss_mask == 1])


@pytest.mark.parametrize("name", ["llama3", "chatml"])
def test_train_on_all_trains_every_token_but_padding(tokenizer, name):
    conv = chat("hello", "yo")
    [ex], _ = tokenize_examples([conv], tokenizer, name, train_on="all")
    assert ex.loss_mask.all()
    batch = pad_examples([ex], len(ex) + 3)
    np.testing.assert_array_equal(batch["loss_mask"][0], [1] * len(ex) + [0, 0, 0])
    np.testing.assert_array_equal(batch["padding_mask"], batch["loss_mask"])
    assert (batch["token_ids"][0, len(ex) :] == 0).all()


def test_plain_text_is_trained_entirely_and_cut_on_the_right(tokenizer):
    [ex], report = tokenize_examples(["hello world"], tokenizer, sequence_length=4)
    assert len(ex) == 4 and ex.loss_mask.all()
    assert tokenizer.detokenize(ex.token_ids.tolist()) == "hello wo"
    assert (report.response_truncated, report.response_tokens_cut) == (1, 3)


def test_left_truncation_keeps_the_response_and_the_bos_and_reports_counts(tokenizer):
    conv = chat("a long question " * 4, "hello", system="sys")
    [full], _ = tokenize_examples([conv], tokenizer, "llama3")
    limit = len(full) - 20
    [ex], report = tokenize_examples([conv], tokenizer, "llama3", sequence_length=limit)
    assert len(ex) == limit
    assert ex.token_ids[0] == tokenizer.token_to_id("<|begin_of_text|>")
    assert trained_text(tokenizer, ex) == "hello<|eot_id|>"
    # what remains is the original's start token and its tail
    np.testing.assert_array_equal(ex.token_ids[1:], full.token_ids[21:])
    assert (report.prompt_truncated, report.prompt_tokens_cut) == (1, 20)
    assert (report.response_truncated, report.response_tokens_cut) == (0, 0)
    with pytest.warns(UserWarning, match=r"1 prompts cut on the left \(20 tokens\)"):
        report.warn(limit)


def test_multi_turn_truncation_counts_lost_earlier_turns(tokenizer):
    conv = chat("q1", "first answer", "q2", "second")
    [full], _ = tokenize_examples([conv], tokenizer, "chatml")
    [ex], report = tokenize_examples([conv], tokenizer, "chatml", sequence_length=len(full) - 12)
    assert trained_text(tokenizer, ex).endswith("second<|im_end|>")
    assert report.earlier_turn_tokens_cut > 0
    assert report.earlier_turn_tokens_cut == full.loss_mask.sum() - ex.loss_mask.sum()


def test_the_response_end_is_cut_only_after_the_prompt(tokenizer):
    conv = chat("question", "hello hello hello")
    [full], _ = tokenize_examples([conv], tokenizer, "chatml")
    response = int(full.loss_mask.sum())
    first_trained = int(np.argmax(full.loss_mask))
    limit = 1 + 4  # 1 prompt token (min_prompt_tokens) + 4 response tokens
    [ex], report = tokenize_examples([conv], tokenizer, "chatml", sequence_length=limit)
    assert len(ex) == limit
    np.testing.assert_array_equal(
        ex.token_ids, full.token_ids[first_trained - 1 : first_trained + 4]
    )
    assert ex.loss_mask.tolist() == [0, 1, 1, 1, 1]
    assert report.prompt_tokens_cut == first_trained - 1
    assert report.response_tokens_cut == response - 4
    assert report.response_truncated == 1


def test_no_room_drop_and_error(tokenizer):
    convs = [chat("hi", "hello"), chat("hello hello hello hello", "yo")]
    kept, report = tokenize_examples(convs, tokenizer, "llama3", sequence_length=2)
    assert kept == [] and report.dropped_no_room == 2
    assert "2 examples dropped with no room for the response" in report.message(2)
    short, _ = tokenize_examples(convs[:1], tokenizer, "chatml")
    limit = len(short[0])
    kept, report = tokenize_examples(convs, tokenizer, "chatml", limit, on_too_long="drop")
    assert len(kept) == 1 and report.dropped_too_long == 1 and report.kept == 1
    examples = to_examples([{"messages": c} for c in convs])
    with pytest.raises(
        ValueError, match=rf"record 1 is \d+ tokens, longer than sequence_length={limit}"
    ):
        tokenize_examples(examples, tokenizer, "chatml", limit, on_too_long="error")
    with pytest.raises(ValueError, match="on_too_long must be one of"):
        tokenize_examples(examples, tokenizer, "chatml", limit, on_too_long="wrap")
    with pytest.raises(ValueError, match="train_on must be one of"):
        tokenize_examples(examples, tokenizer, "chatml", train_on="prompt")


def test_a_tokenizer_that_cannot_encode_the_template_is_refused(tokenizer):
    no_specials = byte_bpe(specials=[])
    with pytest.raises(
        ValueError,
        match=r"splits the chat template 'chatml''s (eos_token|end_of_turn) '<\|im_end\|>' into \d+ tokens",
    ):
        tokenize_examples([chat("hi", "yo")], no_specials, "chatml")
    letters = byte_bpe(alphabet=list("abcdefghijklmnopqrstuvwxyzĊ"))
    with pytest.raises(
        ValueError, match=r"cannot encode the chat template 'chatml' faithfully: 'Hi!"
    ):
        tokenize_examples([chat("hi", "Hi!")], letters, "chatml")
    with pytest.raises(ValueError, match="cannot encode part of the text"):
        encode_texts(_FixedIds([[3, 999]], 50), ["abc"])


class _FixedIds:
    """A stand-in tokenizer returning given ids, to test the id range check."""

    def __init__(self, ids, size):
        self.ids, self.size = ids, size

    def tokenize(self, texts):
        return self.ids

    def vocabulary_size(self):
        return self.size


def test_shift_for_causal_lm_aligns_labels_and_weights():
    ex = TokenizedExample(np.array([5, 6, 7, 8], "int32"), np.array([0, 0, 1, 1], "int32"))
    x, y, w = shift_for_causal_lm(pad_examples([ex], 5))
    np.testing.assert_array_equal(x["token_ids"], [[5, 6, 7, 8]])
    np.testing.assert_array_equal(y, [[6, 7, 8, 0]])
    np.testing.assert_array_equal(w, [[0, 1, 1, 0]])
    packed = pack_examples([ex, ex], 8, method="greedy")
    _, _, w = shift_for_causal_lm({k: v for k, v in packed.items() if k != "placements"})
    np.testing.assert_array_equal(w, [[0, 1, 1, 0, 0, 1, 1]])


# --------------------------------------------------------------------------
# Packing
# --------------------------------------------------------------------------


def _examples(lengths, seed=0):
    rng = np.random.default_rng(seed)
    return [
        TokenizedExample(
            rng.integers(1, 50, n).astype("int32"), rng.integers(0, 2, n).astype("int32")
        )
        for n in lengths
    ]


@pytest.mark.parametrize("method", ["ffd", "greedy"])
def test_packing_preserves_every_token(method):
    examples = _examples([5, 9, 3, 12, 7, 1, 16, 4])
    packed = pack_examples(examples, 16, method=method)
    assert packed["token_ids"].shape[1] == 16
    seen = np.zeros_like(packed["token_ids"], dtype=bool)
    for ex, (row, start, n) in zip(examples, packed["placements"]):
        assert n == len(ex)
        np.testing.assert_array_equal(packed["token_ids"][row, start : start + n], ex.token_ids)
        np.testing.assert_array_equal(packed["loss_mask"][row, start : start + n], ex.loss_mask)
        np.testing.assert_array_equal(packed["position_ids"][row, start : start + n], np.arange(n))
        assert len(set(packed["segment_ids"][row, start : start + n])) == 1
        assert not seen[row, start : start + n].any()
        seen[row, start : start + n] = True
    assert (packed["segment_ids"] > 0).sum() == sum(len(e) for e in examples) == seen.sum()
    assert (packed["token_ids"][~seen] == 0).all() and (packed["loss_mask"][~seen] == 0).all()
    assert (packed["segment_ids"][~seen] == 0).all()


def test_ffd_uses_fewer_rows_and_greedy_keeps_the_order():
    examples = _examples([9, 9, 7, 7])
    ffd = pack_examples(examples, 16, method="ffd")
    greedy = pack_examples(examples, 16, method="greedy")
    assert len(ffd["token_ids"]) == 2 and len(greedy["token_ids"]) == 3
    assert greedy["placements"][:, 0].tolist() == [0, 1, 1, 2]
    with pytest.raises(
        ValueError, match=r"example 1 has 17 tokens; packing needs 1 to sequence_length=16"
    ):
        pack_examples(_examples([3, 17]), 16)


def test_block_diagonal_causal_mask():
    mask = np.asarray(block_diagonal_causal_mask(np.array([[1, 1, 2, 2, 2, 0]])))
    expected = np.array(
        [
            [1, 0, 0, 0, 0, 0],
            [1, 1, 0, 0, 0, 0],
            [0, 0, 1, 0, 0, 0],
            [0, 0, 1, 1, 0, 0],
            [0, 0, 1, 1, 1, 0],
            [0, 0, 0, 0, 0, 1],
        ]
    )
    np.testing.assert_array_equal(mask[0], expected)


@pytest.fixture(scope="module")
def llama():
    import keras
    import keras_hub

    keras.utils.set_random_seed(1)
    return keras_hub.models.LlamaBackbone(
        vocabulary_size=50,
        num_layers=2,
        hidden_dim=16,
        intermediate_dim=32,
        num_query_heads=4,
        num_key_value_heads=2,
    )


def _solo_logits(backbone, ids):
    ids = np.asarray(ids, "int32")[None]
    hidden = backbone({"token_ids": ids, "padding_mask": np.ones_like(ids)})
    return np.asarray(backbone.token_embedding(hidden, reverse=True))[0]


def test_packed_logits_equal_the_logits_of_each_example_alone(llama):
    examples = _examples([5, 9, 3, 12, 7, 4], seed=3)
    packed = pack_examples(examples, 16)
    args = (packed["token_ids"], packed["segment_ids"])
    restarted = np.asarray(packed_logits(llama, *args, packed["position_ids"]))
    unrestarted = np.asarray(packed_logits(llama, *args))
    for ex, (row, start, n) in zip(examples, packed["placements"]):
        solo = _solo_logits(llama, ex.token_ids)
        np.testing.assert_allclose(restarted[row, start : start + n], solo, atol=1e-6)
        # RoPE is relative: inside a block-diagonal mask the offset cancels out
        np.testing.assert_allclose(unrestarted[row, start : start + n], solo, atol=1e-6)


def test_packed_logits_use_the_mask_and_the_positions(llama):
    examples = _examples([6, 8], seed=4)
    packed = pack_examples(examples, 16, method="greedy")
    ids, seg, pos = packed["token_ids"], packed["segment_ids"], packed["position_ids"]
    second = slice(6, 14)
    solo = _solo_logits(llama, examples[1].token_ids)
    one_block = np.asarray(packed_logits(llama, ids, np.where(seg > 0, 1, 0), pos))
    assert np.abs(one_block[0, second] - solo).max() > 1e-3  # attending across examples differs
    stretched = np.asarray(packed_logits(llama, ids, seg, pos * 3))
    # the positions reach RoPE (a tiny random model: small but far above float noise)
    assert np.abs(stretched[0, second] - solo).max() > 1e-5
    rotary = llama.transformer_layers[0]._self_attention_layer.rotary_embedding_layer
    assert rotary.__class__.__name__ == "LlamaRotaryEmbedding"  # swapped back after the call
    np.testing.assert_allclose(
        np.asarray(packed_logits(llama, ids, seg, pos))[0, second], solo, atol=1e-6
    )


def test_packed_logits_refuse_other_models():
    import keras

    with pytest.raises(ValueError, match="Llama-style backbone"):
        packed_logits(keras.Sequential([keras.layers.Dense(2)]), [[1]], [[1]])


def test_report_dict_and_silence():
    report = TruncationReport(examples=3, kept=3)
    assert report.as_dict()["examples"] == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report.warn(8)


def test_file_to_packed_batch_to_a_gradient_step(tmp_path, tokenizer):
    """records -> tokens -> packed rows -> masked next-token loss through the Llama layers."""
    import json

    import keras
    import keras_hub
    import tensorflow as tf

    path = tmp_path / "sft.jsonl"
    rows = [
        {"prompt": "hello", "completion": "hi"},
        {"instruction": "greet", "input": "", "output": "hello hello"},
        {"messages": chat("q1", "a1", "q2", "a2")},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    tokenized, report = tokenize_examples(to_examples(path), tokenizer, "chatml", 48)
    assert report.kept == 3
    packed = pack_examples(tokenized, 48)
    x, y, weight = shift_for_causal_lm({k: v for k, v in packed.items() if k != "placements"})
    assert weight.sum() == sum(int(t.loss_mask[1:].sum()) for t in tokenized)

    keras.utils.set_random_seed(2)
    backbone = keras_hub.models.LlamaBackbone(
        vocabulary_size=tokenizer.vocabulary_size(),
        num_layers=1,
        hidden_dim=16,
        intermediate_dim=32,
        num_query_heads=4,
        num_key_value_heads=2,
    )
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with tf.GradientTape() as tape:
        logits = packed_logits(backbone, x["token_ids"], x["segment_ids"], x["position_ids"])
        loss = loss_fn(y, logits, sample_weight=weight)
    grads = tape.gradient(loss, backbone.trainable_variables)
    assert np.isfinite(float(loss))
    assert all(g is not None for g in grads)
