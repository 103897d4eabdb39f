"""Warm-started encoder-decoders from a BERT-family encoder (Rothe, Narayan & Severyn, TACL 2020).

`fk.Seq2SeqHead(decoder="warm_start")` on a keras-hub BERT backbone turns
the text-encoder kind into the sequence-to-sequence kind
(`finetunekit.families.seq2seq.kind`) with a `WarmStartBackbone`:

- the encoder is the BERT encoder (embeddings and transformer layers, copied);
- the decoder is a stack of keras-hub `TransformerDecoder` layers, one per
  encoder layer, whose self-attention and feed-forward weights (and their
  layer norms) are copied from the BERT layer of the same depth; the
  self-attention is causal and the cross-attention is new (random);
- encoder and decoder share the BERT embeddings, and the next-token logits
  are the decoder output times the transposed token embedding plus a bias.

The tokenizer is the BERT WordPiece tokenizer in a keras-hub
`Seq2SeqLMPreprocessor`: `[CLS]` starts and `[SEP]` ends each side.
`WarmStartSeq2SeqLM` generates with keras-hub's samplers, as BART does.

keras-hub is imported only when a warm start is built or loaded: the classes
that need it live in `finetunekit.families.seq2seq.warm_start_model`, imported on
first use (`warm_start_classes()`); a stand-in registered under the
backbone's name makes `fk.load` import it.
"""

import keras
from keras import ops

from finetunekit.core._keras_compat import (
    transformer_cross_attention_sublayers,
    transformer_shared_sublayers,
)

NAME = "finetunekit>WarmStartBackbone"
EMBEDDINGS = ("token_embedding", "position_embedding", "segment_embedding", "embeddings_layer_norm")


@keras.saving.register_keras_serializable(package="finetunekit", name="WarmStartBackbone")
class _WarmStartBackboneLoader:
    """Stand-in under the backbone's registered name until keras-hub is imported."""

    def get_config(self):  # pragma: no cover - never instantiated
        return {}

    @classmethod
    def from_config(cls, config):
        return warm_start_classes()[0].from_config(config)


def warm_start_classes():
    """`(WarmStartBackbone, WarmStartSeq2SeqLM)` (importing keras-hub, registering the backbone)."""
    from finetunekit.families.seq2seq.warm_start_model import WarmStartBackbone, WarmStartSeq2SeqLM

    return WarmStartBackbone, WarmStartSeq2SeqLM


def is_warm_start_backbone(model):
    """True for a `WarmStartBackbone` (without importing keras-hub for other models)."""
    return type(model).__name__ == "WarmStartBackbone" and isinstance(
        model, warm_start_classes()[0]
    )


def _copy_weights(source, target):
    """Copies `source`'s weights into `target` of the same structure (LoRA factors left out).

    LoRA factors start at zero, so a LoRA-enabled source's base weights are its weights.
    """
    sources = [w for w in source.weights if "lora" not in w.path]
    targets = [w for w in target.weights if "lora" not in w.path]
    for s, t in zip(sources, targets, strict=True):
        if tuple(s.shape) != tuple(t.shape):
            raise ValueError(
                f"Cannot warm-start {t.path} {tuple(t.shape)} from {s.path} {tuple(s.shape)}."
            )
        t.assign(ops.cast(s, t.dtype))


def check_warm_start_encoder(model):
    """Raises unless `model` is a keras-hub BERT backbone (what a warm start copies)."""
    import keras_hub

    if not isinstance(model, keras_hub.models.BertBackbone):
        raise ValueError(
            f'Seq2SeqHead(decoder="warm_start") copies a BERT encoder into a decoder; '
            f"{type(model).__name__} is not a keras-hub BertBackbone. Use a BERT-family "
            "checkpoint (e.g. the MiniLM folder, bert_tiny_en_uncased), or a Seq2SeqLM preset "
            '(BART) with decoder=None.'
        )


def warm_start_backbone(bert):
    """A `WarmStartBackbone` whose encoder, and decoder self-attention/FFN, are copies of `bert`.

    Args:
        bert: a `keras_hub.models.BertBackbone` (any weights).

    Returns:
        A `WarmStartBackbone` with new (random) cross-attention and logit bias.

    Example:
    ```python
    model = warm_start_backbone(keras_hub.models.Backbone.from_preset(minilm_folder))
    ```
    """
    check_warm_start_encoder(bert)
    backbone_class, _ = warm_start_classes()
    model = backbone_class(
        vocabulary_size=bert.vocabulary_size, num_layers=bert.num_layers,
        num_heads=bert.num_heads, hidden_dim=bert.hidden_dim,
        intermediate_dim=bert.intermediate_dim, dropout=bert.dropout,
        max_sequence_length=bert.max_sequence_length, num_segments=bert.num_segments,
        dtype=bert.dtype_policy.name, name="warm_start_backbone",
    )
    for name in EMBEDDINGS:
        _copy_weights(getattr(bert, name), getattr(model, name))
    for source, encoder, decoder in zip(
        bert.transformer_layers, model.encoder_transformer_layers, model.decoder_transformer_layers
    ):
        _copy_weights(source, encoder)
        for source_sublayer, decoder_sublayer in transformer_shared_sublayers(source, decoder):
            _copy_weights(source_sublayer, decoder_sublayer)
    return model


def warm_start_kind(kind):
    """The sequence-to-sequence kind of a warm start from a text-encoder kind's BERT.

    Args:
        kind: a `TextEncoderBackbone` holding a keras-hub BERT backbone.

    Returns:
        A `Seq2SeqBackbone` on `warm_start_backbone(kind.model)` with a
        `Seq2SeqLMPreprocessor` on the BERT tokenizer; the encoder length is
        the text kind's `sequence_length`. With `lora_rank`, the new weights
        (cross-attention and logit bias, which start random) train in full
        beside the LoRA factors.
    """
    import keras_hub

    from finetunekit.families.seq2seq.kind import Seq2SeqBackbone

    check_warm_start_encoder(kind.model)
    preprocessor = keras_hub.models.Seq2SeqLMPreprocessor(
        tokenizer=kind.preprocessor.tokenizer, encoder_sequence_length=kind.sequence_length,
        decoder_sequence_length=kind.sequence_length,
    )
    warm = Seq2SeqBackbone(
        warm_start_backbone(kind.model), preprocessor=preprocessor,
        policy=kind.model.dtype_policy.name, preprocessing=kind.preprocessing,
        lora_rank=kind.lora_rank, layer_decay=kind.layer_decay,
    )
    return train_new_weights(warm)


def train_new_weights(kind):
    """Lets the new weights of a warm start train in full with LoRA (idempotent); returns `kind`."""
    kind.train_in_full_with_lora(new_weight_paths(kind.model))
    return kind


def new_weight_paths(model):
    """Paths of the weights a warm start adds (cross-attention, its norm, the logit bias)."""
    layers = [model.logit_bias]
    for decoder in model.decoder_transformer_layers:
        layers += transformer_cross_attention_sublayers(decoder)
    return [w.path for layer in layers for w in layer.weights if "lora" not in w.path]
