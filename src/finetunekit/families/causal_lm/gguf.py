"""Load a llama.cpp GGUF checkpoint into a keras-hub causal LM.

`load_gguf` reads a ``.gguf`` file with the optional `gguf` package
(``pip install gguf``), dequantises its tensors to floats, maps the Llama
architecture onto a keras-hub Llama backbone and builds a byte-pair tokenizer
from the vocabulary and merges stored in the file's metadata.

This module and its siblings (gguf_reader, gguf_llama, gguf_tokenizer) import
only keras, keras_hub, numpy, each other and (lazily) gguf, so that they can be
used on their own.
"""

import os

import keras_hub

from .gguf_llama import GGUFLlamaBackbone, _llama_config, _load_llama_weights, unpermute_rotary_rows
from .gguf_reader import _field_value, _open_reader, _scalar_fields
from .gguf_tokenizer import PRE_TOKENIZERS, GGUFBytePairTokenizer

__all__ = [
    "GGUFBytePairTokenizer",
    "GGUFLlamaBackbone",
    "load_gguf",
    "read_gguf_metadata",
    "unpermute_rotary_rows",
]

SUPPORTED_ARCHITECTURES = ("llama",)
SUPPORTED_TOKENIZERS = ("gpt2",)

# llama.cpp's token types (tokenizer.ggml.token_type).
_TOKEN_TYPE_CONTROL = 3
_TOKEN_TYPE_USER_DEFINED = 4


def _unsupported_architecture(path, architecture):
    return ValueError(
        f"{path!r} holds a {architecture!r} model (general.architecture), which load_gguf "
        f"cannot map onto a keras-hub backbone; supported: {', '.join(SUPPORTED_ARCHITECTURES)}. "
        "Use a Llama-architecture GGUF (e.g. Llama, SmolLM, TinyLlama) or load the model "
        "with keras_hub.models.CausalLM.from_preset instead."
    )


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
