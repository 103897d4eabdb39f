"""Pack short tokenised examples into fixed-length rows, and attend within each.

Packing several examples into one row of `sequence_length` tokens wastes no
compute on padding. For the examples not to see each other, attention must be
block-diagonal (causal within each example) and, for absolute position
embeddings, positions must restart at 0 for each example. Rotary embeddings
(RoPE, used by Llama, Gemma, Mistral, Qwen) only depend on the *difference*
of positions, so within a block-diagonal mask the offset of an example in its
row cancels out; restarted positions are still the exact thing to do.

keras-hub's `LlamaBackbone` only takes a `padding_mask`, but its decoder
layers take `decoder_attention_mask` `(batch, L, L)`, which they combine with
their own causal mask; their attention layer applies RoPE at positions
`0..L-1` and has no argument for other positions, while the rotary layer
itself accepts `positions`. `packed_logits` runs the backbone's own layers
with the block-diagonal mask and feeds the restarted positions to each rotary
layer, without copying or forking any keras-hub code.
"""

from __future__ import annotations

import contextlib

import keras
import numpy as np

from finetunekit.core._keras_compat import llama_self_attention

__all__ = [
    "PACKED_INPUTS",
    "PackedLogits",
    "block_diagonal_causal_mask",
    "pack_examples",
    "packed_logits",
    "packing_blocker",
]

#: The FineTuner inputs of a packing InstructionHead (every one int32, `(batch, L)`).
PACKED_INPUTS = ("token_ids", "segment_ids", "position_ids")


def pack_examples(examples, sequence_length: int, method: str = "ffd", pad_id: int = 0) -> dict:
    """Pack tokenised examples into rows of `sequence_length` tokens.

    Args:
        examples: `TokenizedExample`s, or dicts / objects with `token_ids` and
            `loss_mask` (1-D), each at most `sequence_length` long.
        sequence_length: the row length.
        method: `"ffd"` (first-fit decreasing: longest first, each into the
            first row with room; fewest rows) or `"greedy"` (in order, a new
            row when the next example does not fit; keeps the order).
        pad_id: the id written into padding.

    Returns:
        A dict of int32 arrays `(rows, sequence_length)`: `token_ids`,
        `loss_mask` (0 on padding), `segment_ids` (1, 2, ... per example in a
        row, 0 on padding) and `position_ids` (restarting at 0 for each
        example, 0 on padding); and `placements`, an int array `(n, 3)` giving
        each input example's `(row, start, length)`.

    Raises:
        ValueError: unknown method, or an example longer than `sequence_length`
            (truncate with `tokenize_examples` first) or empty.

    Example:
        >>> packed = pack_examples(tokenized, 1024)  # doctest: +SKIP
        >>> packed["token_ids"].shape  # doctest: +SKIP
        (37, 1024)
    """
    if method not in ("ffd", "greedy"):
        raise ValueError(f"method must be 'ffd' or 'greedy'; got {method!r}.")
    items = []
    for i, ex in enumerate(examples):
        ids = np.asarray(_field(ex, "token_ids"), dtype="int32").reshape(-1)
        mask = np.asarray(_field(ex, "loss_mask"), dtype="int32").reshape(-1)
        if ids.shape != mask.shape:
            raise ValueError(f"example {i}: token_ids and loss_mask differ in length.")
        if not 0 < len(ids) <= sequence_length:
            raise ValueError(
                f"example {i} has {len(ids)} tokens; packing needs 1 to sequence_length="
                f"{sequence_length}. Tokenise with the same sequence_length first."
            )
        items.append((ids, mask))

    order = range(len(items))
    if method == "ffd":
        order = sorted(order, key=lambda i: -len(items[i][0]))  # stable: ties keep input order
    free: list[int] = []  # room left per row
    contents: list[list[int]] = []
    for i in order:
        n = len(items[i][0])
        row = None
        if method == "ffd":
            row = next((r for r, room in enumerate(free) if room >= n), None)
        elif free and free[-1] >= n:
            row = len(free) - 1
        if row is None:
            free.append(sequence_length)
            contents.append([])
            row = len(free) - 1
        free[row] -= n
        contents[row].append(i)

    rows = len(contents)
    token_ids = np.full((rows, sequence_length), pad_id, dtype="int32")
    loss_mask = np.zeros((rows, sequence_length), dtype="int32")
    segment_ids = np.zeros((rows, sequence_length), dtype="int32")
    position_ids = np.zeros((rows, sequence_length), dtype="int32")
    placements = np.zeros((len(items), 3), dtype="int64")
    for r, members in enumerate(contents):
        start = 0
        for seg, i in enumerate(members, 1):
            ids, mask = items[i]
            end = start + len(ids)
            token_ids[r, start:end] = ids
            loss_mask[r, start:end] = mask
            segment_ids[r, start:end] = seg
            position_ids[r, start:end] = np.arange(len(ids))
            placements[i] = (r, start, len(ids))
            start = end
    return {
        "token_ids": token_ids,
        "loss_mask": loss_mask,
        "segment_ids": segment_ids,
        "position_ids": position_ids,
        "placements": placements,
    }


def _field(example, name):
    if isinstance(example, dict):
        return example[name]
    return getattr(example, name)


def block_diagonal_causal_mask(segment_ids):
    """The attention mask of packed rows: causal, and only within one example.

    `mask[b, i, j] = 1` iff `segment_ids[b, i] == segment_ids[b, j]` and
    `j <= i`. Padding (segment 0) attends only to earlier padding, so no row
    of the mask is empty (an empty row makes softmax undefined) and no real
    token ever sees padding.

    Args:
        segment_ids: int tensor `(batch, L)`, 0 on padding.

    Returns:
        An int32 tensor `(batch, L, L)` (a `keras.ops` tensor).

    Example:
        >>> block_diagonal_causal_mask(np.array([[1, 1, 2, 0]]))[0]  # doctest: +SKIP
        [[1 0 0 0]
         [1 1 0 0]
         [0 0 1 0]
         [0 0 0 1]]
    """
    from keras import ops

    segment_ids = ops.convert_to_tensor(segment_ids, dtype="int32")
    same = ops.equal(ops.expand_dims(segment_ids, 2), ops.expand_dims(segment_ids, 1))
    length = ops.shape(segment_ids)[1]
    steps = ops.arange(length, dtype="int32")
    causal = ops.greater_equal(ops.expand_dims(steps, 1), ops.expand_dims(steps, 0))
    return ops.cast(ops.logical_and(same, ops.expand_dims(causal, 0)), "int32")


class _PositionedRotary:
    """Calls a keras-hub rotary layer with fixed `positions`, ignoring `start_index`."""

    def __init__(self, rotary, positions):
        self._rotary = rotary
        self._positions = positions

    def __call__(self, inputs, start_index=0, **kwargs):
        return self._rotary(inputs, positions=self._positions)


@contextlib.contextmanager
def _rotary_positions(attention_layers, positions):
    """Temporarily make each attention layer apply RoPE at `positions`."""
    saved = []
    try:
        for attention in attention_layers:
            rotary = attention.rotary_embedding_layer
            saved.append((attention, rotary))
            # object.__setattr__ skips Keras's layer tracking: the swap is not a new sublayer.
            object.__setattr__(
                attention, "rotary_embedding_layer", _PositionedRotary(rotary, positions)
            )
        yield
    finally:
        for attention, rotary in saved:
            object.__setattr__(attention, "rotary_embedding_layer", rotary)


def _llama_parts(backbone):
    needed = ("token_embedding", "transformer_layers", "layer_norm")
    if not all(hasattr(backbone, name) for name in needed):
        raise ValueError(
            f"packed_logits needs a keras-hub Llama-style backbone with {needed}; got "
            f"{type(backbone).__name__}."
        )
    attentions = []
    for layer in backbone.transformer_layers:
        attention = llama_self_attention(layer)
        if attention is None or not hasattr(attention, "rotary_embedding_layer"):
            raise ValueError(
                f"{type(backbone).__name__}: decoder layer {layer.name} has no rotary self-attention "
                "layer this function knows (keras-hub LlamaTransformerDecoder)."
            )
        attentions.append(attention)
    return attentions


def packed_logits(backbone, token_ids, segment_ids, position_ids=None, training=False):
    """Next-token logits of packed rows, with a keras-hub Llama backbone's own layers.

    Runs `token_embedding` -> each `LlamaTransformerDecoder` (with
    `decoder_attention_mask` = `block_diagonal_causal_mask(segment_ids)`) ->
    `layer_norm` -> the reversed embedding, like `LlamaCausalLM` does, but
    each example only attends to itself and RoPE is applied at
    `position_ids`. The backbone's weights are used as they are; nothing is
    copied. The rotary layers are swapped for the duration of the call, so do
    not call the same backbone from another thread meanwhile.

    Args:
        backbone: a `keras_hub.models.LlamaBackbone` (or a backbone with the
            same layer attributes, e.g. Mistral/Qwen-style Llama decoders).
        token_ids: int `(batch, L)`.
        segment_ids: int `(batch, L)`, 0 on padding (from `pack_examples`).
        position_ids: int `(batch, L)` restarting at 0 per example; `None`
            keeps positions `0..L-1` (equal up to float rounding under RoPE).
        training: passed to the decoder layers (dropout).

    Returns:
        Logits `(batch, L, vocabulary_size)`.

    Raises:
        ValueError: the backbone does not have Llama's layer structure.

    Example:
        >>> packed = pack_examples(tokenized, 256)  # doctest: +SKIP
        >>> logits = packed_logits(backbone, packed["token_ids"],
        ...                        packed["segment_ids"], packed["position_ids"])  # doctest: +SKIP
    """
    from keras import ops

    attentions = _llama_parts(backbone)
    token_ids = ops.convert_to_tensor(token_ids, dtype="int32")
    mask = block_diagonal_causal_mask(segment_ids)
    positions = None
    if position_ids is not None:
        positions = ops.cast(ops.convert_to_tensor(position_ids), "float32")
    context = (
        _rotary_positions(attentions, positions)
        if positions is not None
        else contextlib.nullcontext()
    )
    with context:
        x = backbone.token_embedding(token_ids)
        for layer in backbone.transformer_layers:
            x = layer(x, decoder_attention_mask=mask, training=training)
        x = backbone.layer_norm(x)
        return backbone.token_embedding(x, reverse=True)


def packing_blocker(backbone):
    """Why `backbone` cannot train on packed rows, or None when it can.

    Packing needs a keras-hub `LlamaBackbone` (`Llama3Backbone` and the
    `GGUFLlamaBackbone` of a `.gguf` file are ones): its decoder layers take
    a `decoder_attention_mask` and its rotary layers take positions, which
    `packed_logits` feeds. Other backbones (GPT-2's learned absolute
    positions, Gemma's, Mistral's sliding-window attention) are not run this
    way and are named in the reason.

    Args:
        backbone: a keras-hub `Backbone`.

    Returns:
        A str (the reason, naming the backbone and the fix) or None.
    """
    import keras_hub

    reason = None
    if not isinstance(backbone, keras_hub.models.LlamaBackbone):
        reason = "it is not a keras-hub LlamaBackbone"
    else:
        try:
            _llama_parts(backbone)
        except ValueError as error:
            reason = str(error)
    if reason is None:
        return None
    return (
        "InstructionHead(packing=True) needs a backbone that takes a block-diagonal attention "
        "mask and restarted positions: a keras-hub LlamaBackbone or Llama3Backbone (a .gguf "
        f"file loads one). {type(backbone).__name__} cannot ({reason}). Use packing=False: "
        "training batches then group examples of similar length, so little is padded."
    )


@keras.saving.register_keras_serializable(package="finetunekit")
class PackedLogits(keras.layers.Layer):
    """The next-token logits of packed rows: `packed_logits` as a layer of the FineTuner graph.

    Takes `{"token_ids", "segment_ids", "position_ids"}` (int, `(batch, L)`,
    from `pack_examples`; a row holding one example has segment ids 1 on
    its tokens, 0 on padding, and positions `0..n-1`) and runs the
    backbone's own layers with the block-diagonal causal mask, so no
    example attends to another or sees its positions. The backbone's
    weights (LoRA and int8 included) are used in place.

    Args:
        backbone: a keras-hub `LlamaBackbone` (see `packing_blocker`).
        **kwargs: Standard `keras.layers.Layer` arguments.

    Example:
    ```python
    logits = PackedLogits(backbone)({"token_ids": ids, "segment_ids": seg, "position_ids": pos})
    ```
    """

    def __init__(self, backbone, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone

    def call(self, inputs, training=None):
        return packed_logits(
            self.backbone, inputs["token_ids"], inputs["segment_ids"], inputs["position_ids"],
            training=training,
        )

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape["token_ids"])
        return shape + (self.backbone.vocabulary_size,)

    def get_config(self):
        return {
            **super().get_config(),
            "backbone": keras.saving.serialize_keras_object(self.backbone),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)
