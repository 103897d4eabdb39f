"""Warm-started encoder-decoders from a BERT-family encoder (Rothe, Narayan & Severyn, TACL 2020).

`fk.Seq2SeqHead(decoder="warm_start")` on a keras-hub BERT backbone turns
the text-encoder kind into the sequence-to-sequence kind
(`finetunekit.backbones.seq2seq`) with a `WarmStartBackbone`:

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
that need it are made on first use (`warm_start_classes()`), and a
registered stand-in makes `fk.load` build the real backbone.
"""

import functools

import keras
from keras import ops

NAME = "finetunekit>WarmStartBackbone"
#: Sub-layers of a BERT `TransformerEncoder` that a `TransformerDecoder` has under the same name.
SHARED_SUBLAYERS = (
    "_self_attention_layer", "_self_attention_layer_norm", "_feedforward_intermediate_dense",
    "_feedforward_output_dense", "_feedforward_layer_norm",
)
EMBEDDINGS = ("token_embedding", "position_embedding", "segment_embedding", "embeddings_layer_norm")


@keras.saving.register_keras_serializable(package="finetunekit")
class LogitBias(keras.layers.Layer):
    """Adds a learned bias (one per vocabulary entry) to next-token logits.

    Args:
        vocabulary_size: int. Size of the last axis.
        **kwargs: Standard `keras.layers.Layer` arguments.

    Returns:
        The logits plus the bias, same shape.

    Example:
    ```python
    logits = LogitBias(30522)(token_embedding(hidden, reverse=True))
    ```
    """

    def __init__(self, vocabulary_size, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary_size = int(vocabulary_size)

    def build(self, input_shape):
        self.bias = self.add_weight(
            name="bias", shape=(self.vocabulary_size,), initializer="zeros"
        )

    def call(self, logits):
        return logits + ops.cast(self.bias, logits.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "vocabulary_size": self.vocabulary_size}


@keras.saving.register_keras_serializable(package="finetunekit", name="WarmStartBackbone")
class _WarmStartBackboneLoader:
    """Stand-in under the backbone's registered name until keras-hub is imported."""

    def get_config(self):  # pragma: no cover - never instantiated
        return {}

    @classmethod
    def from_config(cls, config):
        return warm_start_classes()[0].from_config(config)


@functools.cache
def warm_start_classes():
    """`(WarmStartBackbone, WarmStartSeq2SeqLM)`, made (and registered) on first use."""
    import keras_hub

    backbone_class = _backbone_class(keras_hub)
    task_class = _task_class(keras_hub, backbone_class)
    for cls in (backbone_class, task_class):
        cls.__module__, cls.__qualname__ = __name__, cls.__name__
    keras.saving.register_keras_serializable(package="finetunekit")(backbone_class)
    return backbone_class, task_class


def _backbone_class(keras_hub):
    from keras_hub.src.utils.keras_utils import gelu_approximate

    initializer = functools.partial(keras.initializers.TruncatedNormal, stddev=0.02)

    class WarmStartBackbone(keras_hub.models.Backbone):
        """A BERT-shaped encoder-decoder: BERT encoder layers, decoder layers with cross-attention.

        Build one from a BERT backbone with `warm_start_backbone(bert)`; this
        constructor makes random weights.

        Args:
            vocabulary_size, num_layers, num_heads, hidden_dim,
                intermediate_dim, dropout, max_sequence_length, num_segments:
                as for `keras_hub.models.BertBackbone` (`num_layers` encoder
                and as many decoder layers).
            dtype: dtype policy.
            **kwargs: `keras_hub.models.Backbone` arguments.

        Returns:
            `{"encoder_sequence_output", "decoder_sequence_output", "logits"}`.

        Example:
        ```python
        backbone = WarmStartBackbone(30522, 2, 2, 16, 32)
        ```
        """

        def __init__(
            self, vocabulary_size, num_layers, num_heads, hidden_dim, intermediate_dim,
            dropout=0.1, max_sequence_length=512, num_segments=2, dtype=None, **kwargs,
        ):
            layers = keras_hub.layers
            self.token_embedding = layers.ReversibleEmbedding(
                vocabulary_size, hidden_dim, embeddings_initializer=initializer(), dtype=dtype,
                name="token_embedding",
            )
            self.position_embedding = layers.PositionEmbedding(
                max_sequence_length, initializer=initializer(), dtype=dtype,
                name="position_embedding",
            )
            self.segment_embedding = keras.layers.Embedding(
                num_segments, hidden_dim, embeddings_initializer=initializer(), dtype=dtype,
                name="segment_embedding",
            )
            self.embeddings_add = keras.layers.Add(dtype=dtype, name="embeddings_add")
            self.embeddings_layer_norm = keras.layers.LayerNormalization(
                epsilon=1e-12, dtype=dtype, name="embeddings_layer_norm"
            )
            self.embeddings_dropout = keras.layers.Dropout(
                dropout, dtype=dtype, name="embeddings_dropout"
            )
            options = dict(
                num_heads=num_heads, intermediate_dim=intermediate_dim,
                activation=gelu_approximate, dropout=dropout, layer_norm_epsilon=1e-12,
                dtype=dtype,
            )
            self.encoder_transformer_layers = [
                layers.TransformerEncoder(
                    kernel_initializer=initializer(), name=f"encoder_layer_{i}", **options
                )
                for i in range(num_layers)
            ]
            self.decoder_transformer_layers = [
                layers.TransformerDecoder(
                    kernel_initializer=initializer(), name=f"decoder_layer_{i}", **options
                )
                for i in range(num_layers)
            ]
            self.logit_bias = LogitBias(vocabulary_size, dtype=dtype, name="logit_bias")
            inputs = {
                name: keras.Input(shape=(None,), dtype="int32", name=name)
                for name in ("encoder_token_ids", "encoder_padding_mask",
                             "decoder_token_ids", "decoder_padding_mask")
            }
            encoded = self.call_encoder(
                inputs["encoder_token_ids"], inputs["encoder_padding_mask"]
            )
            decoded = self.embed(inputs["decoder_token_ids"])
            for layer in self.decoder_transformer_layers:
                decoded = layer(
                    decoded, encoded, decoder_padding_mask=inputs["decoder_padding_mask"],
                    encoder_padding_mask=inputs["encoder_padding_mask"],
                )
            outputs = {
                "encoder_sequence_output": encoded,
                "decoder_sequence_output": decoded,
                "logits": self.lm_logits(decoded),
            }
            super().__init__(inputs=inputs, outputs=outputs, dtype=dtype, **kwargs)
            self.vocabulary_size = vocabulary_size
            self.num_layers = num_layers
            self.num_heads = num_heads
            self.hidden_dim = hidden_dim
            self.intermediate_dim = intermediate_dim
            self.dropout = dropout
            self.max_sequence_length = max_sequence_length
            self.num_segments = num_segments

        def embed(self, token_ids, start_index=0):
            """The shared BERT embeddings (segment 0) of `token_ids` from position `start_index`."""
            tokens = self.token_embedding(token_ids)
            positions = self.position_embedding(tokens, start_index=start_index)
            segments = self.segment_embedding(ops.zeros_like(token_ids))
            x = self.embeddings_add((tokens, positions, segments))
            return self.embeddings_dropout(self.embeddings_layer_norm(x))

        def call_encoder(self, token_ids, padding_mask):
            """Encoder hidden states of `token_ids`."""
            x = self.embed(token_ids)
            for layer in self.encoder_transformer_layers:
                x = layer(x, padding_mask=padding_mask)
            return x

        def lm_logits(self, hidden_states):
            """Next-token logits: tied to the token embedding, plus a bias."""
            return self.logit_bias(self.token_embedding(hidden_states, reverse=True))

        def get_config(self):
            return {
                **super().get_config(),
                **{key: getattr(self, key) for key in (
                    "vocabulary_size", "num_layers", "num_heads", "hidden_dim",
                    "intermediate_dim", "dropout", "max_sequence_length", "num_segments",
                )},
            }

    return WarmStartBackbone


def _task_class(keras_hub, backbone_class):
    class WarmStartSeq2SeqLM(keras_hub.models.BartSeq2SeqLM):
        """Generation on a `WarmStartBackbone` with keras-hub's samplers.

        BART's cache handling and `generate_step` are reused as they are;
        the encoder and the cached decoder call are the warm start's own.

        Args:
            backbone: a `WarmStartBackbone`.
            preprocessor: a `keras_hub.models.Seq2SeqLMPreprocessor` with a
                BERT tokenizer, or None.

        Returns:
            Next-token logits.

        Example:
        ```python
        lm = WarmStartSeq2SeqLM(backbone, preprocessor)
        lm.generate(["the cat sat"], max_length=16)
        ```
        """

        backbone_cls = backbone_class
        preprocessor_cls = keras_hub.models.Seq2SeqLMPreprocessor

        def __init__(self, backbone, preprocessor=None, **kwargs):
            self.backbone = backbone
            self.preprocessor = preprocessor
            inputs = backbone.input
            logits = backbone(inputs)["logits"]
            keras_hub.models.Seq2SeqLM.__init__(self, inputs=inputs, outputs=logits, **kwargs)

        def call_encoder(self, token_ids, padding_mask):
            return self.backbone.call_encoder(token_ids, padding_mask)

        def call_decoder_with_cache(
            self, encoder_hidden_states, encoder_padding_mask, decoder_token_ids,
            self_attention_cache=None, self_attention_cache_update_index=None,
            cross_attention_cache=None, cross_attention_cache_update_index=None,
        ):
            start = self_attention_cache_update_index
            x = self.backbone.embed(decoder_token_ids, start_index=0 if start is None else start)
            self_caches, cross_caches = [], []
            for i, layer in enumerate(self.backbone.decoder_transformer_layers):
                x, self_cache, cross_cache = layer(
                    decoder_sequence=x, encoder_sequence=encoder_hidden_states,
                    encoder_padding_mask=encoder_padding_mask,
                    self_attention_cache=self_attention_cache[:, i, ...],
                    self_attention_cache_update_index=self_attention_cache_update_index,
                    cross_attention_cache=cross_attention_cache[:, i, ...],
                    cross_attention_cache_update_index=cross_attention_cache_update_index,
                )
                self_caches.append(self_cache)
                cross_caches.append(cross_cache)
            if self_attention_cache_update_index is not None:
                self_attention_cache = ops.stack(self_caches, axis=1)
            if cross_attention_cache_update_index is not None:
                cross_attention_cache = ops.stack(cross_caches, axis=1)
            logits = self.backbone.lm_logits(x)
            return logits, x, self_attention_cache, cross_attention_cache

    return WarmStartSeq2SeqLM


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
        for name in SHARED_SUBLAYERS:
            _copy_weights(getattr(source, name), getattr(decoder, name))
    return model


def warm_start_kind(kind):
    """The sequence-to-sequence kind of a warm start from a text-encoder kind's BERT.

    Args:
        kind: a `TextEncoderBackbone` holding a keras-hub BERT backbone.

    Returns:
        A `Seq2SeqBackbone` on `warm_start_backbone(kind.model)` with a
        `Seq2SeqLMPreprocessor` on the BERT tokenizer; the encoder length is
        the text kind's `sequence_length`.
    """
    import keras_hub

    from finetunekit.backbones.seq2seq import Seq2SeqBackbone

    check_warm_start_encoder(kind.model)
    preprocessor = keras_hub.models.Seq2SeqLMPreprocessor(
        tokenizer=kind.preprocessor.tokenizer, encoder_sequence_length=kind.sequence_length,
        decoder_sequence_length=kind.sequence_length,
    )
    return Seq2SeqBackbone(
        warm_start_backbone(kind.model), preprocessor=preprocessor,
        policy=kind.model.dtype_policy.name, preprocessing=kind.preprocessing,
        lora_rank=kind.lora_rank, layer_decay=kind.layer_decay,
    )
