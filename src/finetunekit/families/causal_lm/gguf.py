"""Load a llama.cpp GGUF checkpoint into a keras-hub causal LM.

`load_gguf` reads a ``.gguf`` file with the optional `gguf` package
(``pip install gguf``), dequantises its tensors to floats, maps the Llama
architecture onto a keras-hub Llama backbone and builds a byte-pair tokenizer
from the vocabulary and merges stored in the file's metadata.

This module imports only keras, keras_hub, numpy and (lazily) gguf, so that it
can be used on its own.
"""

import os

import keras
import keras_hub
import numpy as np
from keras_hub.src.tokenizers import byte_pair_tokenizer as _keras_hub_bpe

SUPPORTED_ARCHITECTURES = ("llama",)
SUPPORTED_TOKENIZERS = ("gpt2",)

# The word splitting before BPE, by llama.cpp's tokenizer.ggml.pre name. GPT-2's
# rule is byte-level BPE's default; SmolLM first splits every digit apart; Llama 3
# splits numbers into runs of up to three digits.
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
    r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
PRE_TOKENIZERS = ("gpt2", "smollm", "llama-bpe")

# llama.cpp's token types (tokenizer.ggml.token_type).
_TOKEN_TYPE_CONTROL = 3
_TOKEN_TYPE_USER_DEFINED = 4


def _import_gguf():
    try:
        import gguf
    except ImportError as error:
        raise ImportError(
            "Reading a .gguf checkpoint needs the `gguf` package, which is not installed. "
            "Install it with `pip install gguf` (or `pip install finetunekit[llm]`)."
        ) from error
    return gguf


@keras.saving.register_keras_serializable(package="finetunekit")
class GGUFLlamaBackbone(keras_hub.models.Llama3Backbone):
    """A `keras_hub.models.Llama3Backbone` whose config keeps `tie_word_embeddings`.

    keras-hub's Llama backbones accept `tie_word_embeddings` (the output
    projection reuses the token embedding, as in SmolLM2) but leave it out of
    `get_config`, so a saved and reloaded tied model would come back untied
    (with a fresh, random output projection). This subclass only adds the flag
    to the config; layers, weights and outputs are those of `Llama3Backbone`.

    Args:
        **kwargs: the arguments of `keras_hub.models.Llama3Backbone`.

    Example:
    ```python
    backbone = GGUFLlamaBackbone(
        vocabulary_size=40, num_layers=2, num_query_heads=4,
        num_key_value_heads=2, hidden_dim=16, intermediate_dim=32,
        tie_word_embeddings=True,
    )
    clone = GGUFLlamaBackbone.from_config(backbone.get_config())
    assert clone.tie_word_embeddings
    ```
    """

    def get_config(self):
        """Returns the backbone config, `tie_word_embeddings` included.

        Returns:
            dict: the `Llama3Backbone` config plus `tie_word_embeddings`.

        Example:
        ```python
        GGUFLlamaBackbone.from_config(backbone.get_config())
        ```
        """
        config = super().get_config()
        config["tie_word_embeddings"] = self.tie_word_embeddings
        return config

    @classmethod
    def from_config(cls, config):
        """Rebuilds the backbone from `get_config()`'s dict.

        Args:
            config: dict returned by `get_config`.

        Returns:
            GGUFLlamaBackbone: a new backbone with fresh weights.

        Example:
        ```python
        clone = GGUFLlamaBackbone.from_config(backbone.get_config())
        ```
        """
        return super().from_config(config)


@keras.saving.register_keras_serializable(package="finetunekit")
class GGUFBytePairTokenizer(keras_hub.tokenizers.BytePairTokenizer):
    """A GPT-2 style byte-pair tokenizer built from a GGUF file's vocabulary.

    Unlike `keras_hub.models.Llama3Tokenizer`, the start, end and padding
    tokens are arguments (SmolLM2 ends turns with `<|im_end|>`), and every
    token listed in `special_tokens` is never split, so that chat markers such
    as `<|im_start|>` encode as single ids.

    Args:
        vocabulary: dict mapping token strings to ids, or a JSON file path.
        merges: list of merge rules (`"a b"` strings), or a file path.
        bos_token: string or `None`. The start token that the preprocessor
            prepends (`start_token_id`); `None` (models such as SmolLM2 that
            prepend nothing) prepends nothing.
        eos_token: string, the end token (`end_token_id`); generation stops on it.
        pad_token: string or `None`, the padding token (`pad_token_id`). It must
            differ from `eos_token`: keras-hub's `generate` fills the positions
            still to generate with it and stops as soon as it sees an end id
            there. `None` picks the first of `special_tokens` that is not
            `eos_token` (the id only fills masked positions).
        special_tokens: list of strings kept whole when tokenizing (control
            tokens). `bos_token`, `eos_token` and `pad_token` are added.
        pre_tokenizer: how text is split into words before BPE, by llama.cpp's
            `tokenizer.ggml.pre` name: `"gpt2"` (GPT-2's rule, the default),
            `"smollm"` (every digit apart, then GPT-2's rule) or `"llama-bpe"`
            (Llama 3's rule). It applies on the Python path (direct calls,
            `generate`); inside `tf.data` keras-hub's TensorFlow path splits
            with its own GPT-2-like rule.
        **kwargs: passed to `keras_hub.tokenizers.BytePairTokenizer`.

    Example:
    ```python
    tokenizer = GGUFBytePairTokenizer(
        vocabulary={"<s>": 0, "</s>": 1, "a": 2, "b": 3, "ab": 4},
        merges=["a b"], bos_token="<s>", eos_token="</s>",
    )
    tokenizer("ab</s>")  # [4, 1]; pad_token_id is 0 ("<s>")
    ```
    """

    def __init__(
        self,
        vocabulary=None,
        merges=None,
        bos_token=None,
        eos_token=None,
        pad_token=None,
        special_tokens=None,
        pre_tokenizer="gpt2",
        **kwargs,
    ):
        if pre_tokenizer not in PRE_TOKENIZERS:
            raise ValueError(
                f"Unknown pre_tokenizer {pre_tokenizer!r}; known: {', '.join(PRE_TOKENIZERS)}. "
                'Pass one of them ("gpt2" suits most byte-level BPE vocabularies).'
            )
        self.pre_tokenizer = pre_tokenizer
        if eos_token is None:
            raise ValueError(
                "GGUFBytePairTokenizer needs an end token. Received: eos_token=None. "
                "Pass eos_token=<the end-of-text string in the vocabulary>."
            )
        special_tokens = list(special_tokens or [])
        for token in (bos_token, eos_token):
            if token is not None and token not in special_tokens:
                special_tokens.append(token)
        if pad_token is None:
            pad_token = next((t for t in special_tokens if t != eos_token), None)
        if pad_token is None or pad_token == eos_token:
            raise ValueError(
                f"GGUFBytePairTokenizer needs a padding token other than the end token "
                f"{eos_token!r}: keras-hub's generate() pads the positions still to generate "
                "and stops when it finds an end id among them. Pass pad_token=<another "
                "special token>, or list one in special_tokens."
            )
        if pad_token not in special_tokens:
            special_tokens.append(pad_token)
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.special_token_strings = special_tokens
        if bos_token is None:
            self.start_token = None
            self.start_token_id = None
        else:
            self._add_special_token(bos_token, "start_token")
        self._add_special_token(eos_token, "end_token")
        self._add_special_token(pad_token, "pad_token")
        named = {bos_token, eos_token, pad_token}
        others = [t for t in special_tokens if t not in named]
        for i, token in enumerate(others):
            # Registered like Llama3Tokenizer's extra tokens, so that
            # generate() strips them from its output.
            self._add_special_token(token, f"special_token_{i:03d}")
        kwargs.setdefault("unsplittable_tokens", list(special_tokens))
        super().__init__(vocabulary=vocabulary, merges=merges, **kwargs)

    def _set_vocabulary_and_merges_tokenizers(self, vocabulary, merges):
        # keras-hub hands its split pattern to `tokenizers` as a plain string,
        # which `tokenizers` matches literally, so its Python path splits no words
        # (it gave "\n    " + "return" where GPT-2's rule gives "\n   " + " return");
        # set a real rule here.
        super()._set_vocabulary_and_merges_tokenizers(vocabulary, merges)
        pre = _keras_hub_bpe.pre_tokenizers
        byte_level = pre.ByteLevel(add_prefix_space=self.add_prefix_space, use_regex=True)
        if self.pre_tokenizer == "smollm":
            steps = [pre.Digits(individual_digits=True), byte_level]
        elif self.pre_tokenizer == "llama-bpe":
            split = pre.Split(_keras_hub_bpe.tokenizers.Regex(_LLAMA3_SPLIT), behavior="isolated")
            steps = [
                split,
                pre.ByteLevel(add_prefix_space=self.add_prefix_space, use_regex=False),
            ]
        else:
            steps = [byte_level]
        self._tokenizer.pre_tokenizer = pre.Sequence(steps)

    def get_config(self):
        """Returns the tokenizer config (the vocabulary is saved as assets).

        Returns:
            dict: the `BytePairTokenizer` config plus the special tokens.

        Example:
        ```python
        clone = GGUFBytePairTokenizer.from_config(tokenizer.get_config())
        clone.set_vocabulary_and_merges(tokenizer.vocabulary, tokenizer.merges)
        ```
        """
        config = super().get_config()
        config.update(
            {
                "bos_token": self.bos_token,
                "eos_token": self.eos_token,
                "pad_token": self.pad_token,
                "special_tokens": list(self.special_token_strings),
                "pre_tokenizer": self.pre_tokenizer,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        """Rebuilds the tokenizer from `get_config()`'s dict.

        Args:
            config: dict returned by `get_config`.

        Returns:
            GGUFBytePairTokenizer: without a vocabulary unless the config
            carries one (Keras restores it from the saved assets).

        Example:
        ```python
        clone = GGUFBytePairTokenizer.from_config(tokenizer.get_config())
        ```
        """
        return super().from_config(config)


def _field_value(reader, key, default=None):
    field = reader.fields.get(key)
    if field is None:
        return default
    value = field.contents()
    if isinstance(value, np.generic):
        value = value.item()
    return value


def _scalar_fields(reader):
    """All metadata except the big per-token arrays, as plain Python values."""
    skipped = {
        "tokenizer.ggml.tokens",
        "tokenizer.ggml.token_type",
        "tokenizer.ggml.merges",
        "tokenizer.ggml.scores",
    }
    values = {}
    for key, field in reader.fields.items():
        if key in skipped or key.startswith("GGUF."):
            continue
        try:
            values[key] = field.contents()
        except Exception:  # an exotic field type: keep the loader going
            continue
    return values


def _open_reader(path):
    gguf = _import_gguf()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"No GGUF file at {path!r}. Pass the path of an existing .gguf checkpoint."
        )
    with open(path, "rb") as file:
        magic = file.read(4)
    if magic != b"GGUF":
        raise ValueError(
            f"{path!r} is not a GGUF file: it starts with {magic!r}, not the GGUF magic "
            "b'GGUF'. Pass a .gguf checkpoint (llama.cpp's format); for safetensors or "
            "Keras files use keras_hub's from_preset or keras.saving.load_model instead."
        )
    try:
        reader = gguf.GGUFReader(path, "r")
    except Exception as error:
        raise ValueError(
            f"{path!r} is a truncated or damaged GGUF file ({type(error).__name__}: {error}). "
            "Download or convert the checkpoint again."
        ) from error
    for tensor in reader.tensors:
        if tensor.data.nbytes != int(tensor.n_bytes):
            raise ValueError(
                f"{path!r} is truncated: tensor {tensor.name!r} should hold "
                f"{int(tensor.n_bytes)} bytes but the file holds {tensor.data.nbytes}. "
                "Download or convert the checkpoint again."
            )
    return reader


def _dequantize(gguf, path, tensor):
    """A tensor as a float32 array in GGUF's row-major order, e.g. (out, in) for a matrix."""
    try:
        array = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
    except NotImplementedError as error:
        raise ValueError(
            f"{path!r}: tensor {tensor.name!r} uses quantisation "
            f"{tensor.tensor_type.name}, which the installed gguf package cannot dequantise "
            f"({error}). Upgrade gguf (`pip install -U gguf`) or convert the checkpoint to "
            "F16, Q8_0 or Q4_1."
        ) from error
    shape = tuple(int(d) for d in reversed(tensor.shape))
    return np.asarray(array, dtype="float32").reshape(shape)


def unpermute_rotary_rows(weight, num_heads):
    """Undo llama.cpp's row permutation of a q or k projection matrix.

    llama.cpp stores the q/k projections so that each head's rotary pairs are
    adjacent rows (dims 2i and 2i+1), while Hugging Face and keras-hub rotate
    dim i with dim i + head_dim / 2. The converter therefore regroups the rows
    of each head; this function regroups them back.

    Args:
        weight: array of shape `(num_heads * head_dim, hidden_dim)` as stored
            in the GGUF file (output rows first).
        num_heads: number of heads the matrix projects to (the key/value head
            count for `attn_k`).

    Returns:
        np.ndarray: the same shape, rows in keras-hub's rotary order.

    Example:
    ```python
    wq = unpermute_rotary_rows(gguf_wq, num_heads=9)
    ```
    """
    rows = weight.shape[0]
    head_dim = rows // num_heads
    regrouped = weight.reshape(num_heads, head_dim // 2, 2, *weight.shape[1:])
    return regrouped.swapaxes(1, 2).reshape(weight.shape)


def _unsupported_architecture(path, architecture):
    return ValueError(
        f"{path!r} holds a {architecture!r} model (general.architecture), which load_gguf "
        f"cannot map onto a keras-hub backbone; supported: {', '.join(SUPPORTED_ARCHITECTURES)}. "
        "Use a Llama-architecture GGUF (e.g. Llama, SmolLM, TinyLlama) or load the model "
        "with keras_hub.models.CausalLM.from_preset instead."
    )


def _llama_config(reader, path):
    arch = "llama"

    def required(key):
        value = _field_value(reader, f"{arch}.{key}")
        if value is None:
            raise ValueError(
                f"{path!r} lacks the metadata field {arch}.{key!s}, which load_gguf needs to "
                "build the model. Re-convert the checkpoint with a current llama.cpp."
            )
        return value

    hidden = int(required("embedding_length"))
    heads = int(required("attention.head_count"))
    kv_heads = int(_field_value(reader, f"{arch}.attention.head_count_kv", heads))
    rope_dims = _field_value(reader, f"{arch}.rope.dimension_count")
    if rope_dims is not None and int(rope_dims) != hidden // heads:
        raise ValueError(
            f"{path!r} applies rotary embeddings to {int(rope_dims)} of each head's "
            f"{hidden // heads} dimensions (partial RoPE), which keras-hub's Llama backbone "
            "does not support. Use a checkpoint whose rope.dimension_count equals the head size."
        )
    scaling = _field_value(reader, f"{arch}.rope.scaling.type")
    if scaling not in (None, "none"):
        raise ValueError(
            f"{path!r} uses RoPE scaling {scaling!r}, which load_gguf does not map yet. "
            "Use a checkpoint without rope scaling."
        )
    token_embd = next(t for t in reader.tensors if t.name == "token_embd.weight")
    vocab = _field_value(reader, f"{arch}.vocab_size")
    vocab = int(vocab) if vocab is not None else int(token_embd.shape[1])
    return {
        "vocabulary_size": vocab,
        "num_layers": int(required("block_count")),
        "num_query_heads": heads,
        "num_key_value_heads": kv_heads,
        "hidden_dim": hidden,
        "intermediate_dim": int(required("feed_forward_length")),
        "rope_max_wavelength": float(_field_value(reader, f"{arch}.rope.freq_base", 10000.0)),
        "layer_norm_epsilon": float(
            _field_value(reader, f"{arch}.attention.layer_norm_rms_epsilon", 1e-5)
        ),
        "tie_word_embeddings": not any(t.name == "output.weight" for t in reader.tensors),
    }


def _build_tokenizer(reader, path):
    model = _field_value(reader, "tokenizer.ggml.model")
    if model not in SUPPORTED_TOKENIZERS:
        raise ValueError(
            f"{path!r} holds a {model!r} tokenizer (tokenizer.ggml.model); load_gguf builds "
            f"only {', '.join(SUPPORTED_TOKENIZERS)} (byte-level BPE) tokenizers. Use a "
            "checkpoint with a BPE tokenizer, or build the tokenizer yourself."
        )
    tokens = list(reader.fields["tokenizer.ggml.tokens"].contents())
    merges_field = reader.fields.get("tokenizer.ggml.merges")
    merges = list(merges_field.contents()) if merges_field is not None else []
    types_field = reader.fields.get("tokenizer.ggml.token_type")
    types = list(types_field.contents()) if types_field is not None else [1] * len(tokens)
    vocabulary = {token: i for i, token in enumerate(tokens)}
    special = [
        token
        for token, kind in zip(tokens, types)
        if kind in (_TOKEN_TYPE_CONTROL, _TOKEN_TYPE_USER_DEFINED)
    ]

    def token_of(key):
        index = _field_value(reader, f"tokenizer.ggml.{key}")
        if index is None:
            return None
        index = int(index)
        if not 0 <= index < len(tokens):
            raise ValueError(
                f"{path!r}: tokenizer.ggml.{key} is {index}, outside the vocabulary of "
                f"{len(tokens)} tokens. Re-convert the checkpoint."
            )
        return tokens[index]

    eos = token_of("eos_token_id")
    if eos is None:
        raise ValueError(
            f"{path!r} names no end-of-sequence token (tokenizer.ggml.eos_token_id), so "
            "generation could not stop. Re-convert the checkpoint with a current llama.cpp."
        )
    bos = token_of("bos_token_id")
    add_bos = bool(_field_value(reader, "tokenizer.ggml.add_bos_token", False))
    pad = token_of("padding_token_id")
    if pad == eos:  # SmolLM2 pads with <|im_end|>; keras-hub's generate needs another id
        pad = None
    if pad is None and not any(t != eos for t in special):
        pad = tokens[0] if tokens[0] != eos else tokens[1]
    pre = _field_value(reader, "tokenizer.ggml.pre")
    pre = {"llama3": "llama-bpe"}.get(pre, pre)
    tokenizer = GGUFBytePairTokenizer(
        vocabulary=vocabulary,
        merges=merges,
        bos_token=bos if add_bos else None,
        eos_token=eos,
        pad_token=pad,
        special_tokens=special,
        pre_tokenizer=pre if pre in PRE_TOKENIZERS else "gpt2",
    )
    return tokenizer, special, bos


def _load_llama_weights(backbone, reader, path, config):
    gguf = _import_gguf()
    tensors = {t.name: t for t in reader.tensors}

    def get(name):
        tensor = tensors.get(name)
        if tensor is None:
            raise ValueError(
                f"{path!r} lacks the tensor {name!r} that a Llama checkpoint holds. "
                "The file may be a partial (split) GGUF or a different architecture; "
                "pass the complete checkpoint."
            )
        return _dequantize(gguf, path, tensor)

    def assign(variable, value, name):
        if tuple(variable.shape) != tuple(value.shape):
            raise ValueError(
                f"{path!r}: tensor {name!r} has shape {value.shape} where the model built "
                f"from the file's metadata expects {tuple(variable.shape)}. The metadata and "
                "the tensors disagree; re-convert the checkpoint."
            )
        variable.assign(value.astype(keras.backend.standardize_dtype(variable.dtype)))

    hidden = config["hidden_dim"]
    heads = config["num_query_heads"]
    kv_heads = config["num_key_value_heads"]
    head_dim = hidden // heads

    embedding = backbone.get_layer("token_embedding")
    assign(embedding.embeddings, get("token_embd.weight"), "token_embd.weight")
    if not config["tie_word_embeddings"]:
        assign(embedding.reverse_embeddings, get("output.weight").T, "output.weight")
    assign(
        backbone.get_layer("sequence_output_layernorm").scale,
        get("output_norm.weight"),
        "output_norm.weight",
    )
    for i in range(config["num_layers"]):
        layer = backbone.get_layer(f"transformer_layer_{i}")
        attention = layer._self_attention_layer
        prefix = f"blk.{i}."
        wq = unpermute_rotary_rows(get(prefix + "attn_q.weight"), heads)
        wk = unpermute_rotary_rows(get(prefix + "attn_k.weight"), kv_heads)
        wv = get(prefix + "attn_v.weight")
        wo = get(prefix + "attn_output.weight")
        assign(attention._query_dense.kernel, wq.T.reshape(hidden, heads, head_dim), "attn_q")
        assign(attention._key_dense.kernel, wk.T.reshape(hidden, kv_heads, head_dim), "attn_k")
        assign(attention._value_dense.kernel, wv.T.reshape(hidden, kv_heads, head_dim), "attn_v")
        assign(
            attention._output_dense.kernel,
            wo.T.reshape(heads, head_dim, hidden),
            prefix + "attn_output.weight",
        )
        assign(layer._self_attention_layernorm.scale, get(prefix + "attn_norm.weight"), "attn_norm")
        assign(layer._feedforward_layernorm.scale, get(prefix + "ffn_norm.weight"), "ffn_norm")
        assign(layer._feedforward_gate_dense.kernel, get(prefix + "ffn_gate.weight").T, "ffn_gate")
        assign(
            layer._feedforward_intermediate_dense.kernel, get(prefix + "ffn_up.weight").T, "ffn_up"
        )
        assign(
            layer._feedforward_output_dense.kernel, get(prefix + "ffn_down.weight").T, "ffn_down"
        )


def read_gguf_metadata(path):
    """Read a GGUF file's metadata without building a model.

    Args:
        path: path of a `.gguf` file.

    Returns:
        dict: every metadata field except the per-token arrays (keys as in
        the file, e.g. `"general.architecture"`, `"tokenizer.chat_template"`),
        plus `"tensor_types"`: a dict of quantisation type name -> tensor count.

    Raises:
        ValueError: the file is not GGUF or is truncated.
        ImportError: the `gguf` package is not installed.

    Example:
    ```python
    fields = read_gguf_metadata("SmolLM2-135M-Instruct.Q4_1.gguf")
    fields["general.architecture"]  # "llama"
    ```
    """
    reader = _open_reader(path)
    fields = _scalar_fields(reader)
    counts = {}
    for tensor in reader.tensors:
        counts[tensor.tensor_type.name] = counts.get(tensor.tensor_type.name, 0) + 1
    fields["tensor_types"] = counts
    return fields


def load_gguf(path, dtype=None, sequence_length=1024):
    """Load a GGUF checkpoint (llama.cpp's format) as a keras-hub causal LM.

    The tensors are dequantised to floats (so a Q4_1 file gives the Q4_1
    model's values, in `dtype`); llama.cpp's row order of the q/k projections
    is undone so that keras-hub's rotary embedding applies to the right
    dimensions. The tokenizer is built from `tokenizer.ggml.tokens` and
    `tokenizer.ggml.merges`; control tokens such as `<|im_start|>` encode as
    single ids.

    Args:
        path: path of a `.gguf` file whose `general.architecture` is `"llama"`
            (Llama 1/2/3, SmolLM, TinyLlama ...) with a `"gpt2"` (byte-level
            BPE) tokenizer.
        dtype: weight and compute dtype of the model (e.g. `"float32"`,
            `"bfloat16"`); `None` uses Keras' default float type.
        sequence_length: the preprocessor's packed length, which is also the
            default `max_length` of `generate`.

    Returns:
        tuple: `(causal_lm, metadata)`. `causal_lm` is a
        `keras_hub.models.Llama3CausalLM` whose backbone is a
        `GGUFLlamaBackbone` and whose preprocessor's tokenizer is a
        `GGUFBytePairTokenizer`. `metadata` is a dict with `"path"`,
        `"architecture"`, `"name"`, `"context_length"`, `"chat_template"`
        (Jinja string or `None`), `"bos_token"`/`"bos_token_id"`,
        `"eos_token"`/`"eos_token_id"`, `"pad_token"`/`"pad_token_id"` (the
        model's padding id: the file's unless it equals the end id, which
        keras-hub's `generate` cannot use, then the first other control token),
        `"special_tokens"` (string -> id), `"add_bos_token"` (whether the
        preprocessor prepends `bos_token`; the file decides),
        `"tokenizer_pre"`, `"config"` (the backbone's arguments),
        `"tensor_types"` (quantisation type -> tensor count) and `"fields"`
        (all other metadata).

    Raises:
        ImportError: the `gguf` package is not installed.
        FileNotFoundError: there is no file at `path`.
        ValueError: the file is not GGUF, is truncated, or holds an
            architecture or tokenizer other than the supported ones.

    Example:
    ```python
    lm, meta = load_gguf("SmolLM2-135M-Instruct.Q4_1.gguf")
    prompt = "<|im_start|>user\\nWhat is the capital of France?<|im_end|>\\n"
    prompt += "<|im_start|>assistant\\n"
    lm.compile(sampler="greedy")
    lm.generate(prompt, max_length=64)
    ```
    """
    path = os.fspath(path)
    reader = _open_reader(path)
    architecture = _field_value(reader, "general.architecture")
    if architecture not in SUPPORTED_ARCHITECTURES:
        raise _unsupported_architecture(path, architecture)
    if not any(t.name == "token_embd.weight" for t in reader.tensors):
        raise ValueError(
            f"{path!r} holds no token_embd.weight tensor; it may be a vocabulary-only or "
            "split GGUF. Pass the complete checkpoint."
        )
    config = _llama_config(reader, path)
    tokenizer, special, bos = _build_tokenizer(reader, path)
    if tokenizer.vocabulary_size() != config["vocabulary_size"]:
        raise ValueError(
            f"{path!r}: the tokenizer has {tokenizer.vocabulary_size()} tokens but the model "
            f"{config['vocabulary_size']} embeddings. Re-convert the checkpoint."
        )

    backbone = GGUFLlamaBackbone(**config, dtype=dtype)
    _load_llama_weights(backbone, reader, path, config)
    preprocessor = keras_hub.models.Llama3CausalLMPreprocessor(
        tokenizer=tokenizer,
        sequence_length=sequence_length,
        add_start_token=tokenizer.start_token_id is not None,
    )
    causal_lm = keras_hub.models.Llama3CausalLM(backbone=backbone, preprocessor=preprocessor)

    fields = _scalar_fields(reader)
    counts = {}
    for tensor in reader.tensors:
        counts[tensor.tensor_type.name] = counts.get(tensor.tensor_type.name, 0) + 1
    context = _field_value(reader, "llama.context_length")
    metadata = {
        "path": path,
        "architecture": architecture,
        "name": _field_value(reader, "general.name"),
        "context_length": int(context) if context is not None else None,
        "chat_template": _field_value(reader, "tokenizer.chat_template"),
        "bos_token": bos,
        "bos_token_id": None if bos is None else int(tokenizer.token_to_id(bos)),
        "eos_token": tokenizer.eos_token,
        "eos_token_id": int(tokenizer.end_token_id),
        "pad_token": tokenizer.pad_token,
        "pad_token_id": int(tokenizer.pad_token_id),
        "special_tokens": {token: int(tokenizer.token_to_id(token)) for token in special},
        "add_bos_token": bool(_field_value(reader, "tokenizer.ggml.add_bos_token", False)),
        "tokenizer_pre": _field_value(reader, "tokenizer.ggml.pre"),
        "config": dict(config),
        "tensor_types": counts,
        "fields": fields,
    }
    return causal_lm, metadata
