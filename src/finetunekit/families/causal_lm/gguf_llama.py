"""The Llama architecture of a GGUF file mapped onto a keras-hub Llama backbone."""

import keras
import keras_hub

from finetunekit.core._keras_compat import llama_decoder_sublayers

from .gguf_reader import _dequantize, _field_value, _import_gguf


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
        parts = llama_decoder_sublayers(layer)
        prefix = f"blk.{i}."
        wq = unpermute_rotary_rows(get(prefix + "attn_q.weight"), heads)
        wk = unpermute_rotary_rows(get(prefix + "attn_k.weight"), kv_heads)
        wv = get(prefix + "attn_v.weight")
        wo = get(prefix + "attn_output.weight")
        assign(parts["query"].kernel, wq.T.reshape(hidden, heads, head_dim), "attn_q")
        assign(parts["key"].kernel, wk.T.reshape(hidden, kv_heads, head_dim), "attn_k")
        assign(parts["value"].kernel, wv.T.reshape(hidden, kv_heads, head_dim), "attn_v")
        assign(
            parts["output"].kernel,
            wo.T.reshape(heads, head_dim, hidden),
            prefix + "attn_output.weight",
        )
        assign(parts["attention_norm"].scale, get(prefix + "attn_norm.weight"), "attn_norm")
        assign(parts["ffn_norm"].scale, get(prefix + "ffn_norm.weight"), "ffn_norm")
        assign(parts["ffn_gate"].kernel, get(prefix + "ffn_gate.weight").T, "ffn_gate")
        assign(parts["ffn_up"].kernel, get(prefix + "ffn_up.weight").T, "ffn_up")
        assign(parts["ffn_down"].kernel, get(prefix + "ffn_down.weight").T, "ffn_down")
