"""The warm-started encoder-decoder as a keras-hub backbone and `Seq2SeqLM` (imports keras-hub).

Imported on first use by `finetunekit.families.seq2seq.warm_start`, which copies a
BERT checkpoint into a `WarmStartBackbone`; see that module for the design.
"""

import keras
import keras_hub
from keras import ops

from finetunekit.core._keras_compat import gelu_approximate

INPUTS = ("encoder_token_ids", "encoder_padding_mask", "decoder_token_ids", "decoder_padding_mask")
CONFIG_KEYS = (
    "vocabulary_size", "num_layers", "num_heads", "hidden_dim", "intermediate_dim", "dropout",
    "max_sequence_length", "num_segments",
)


def _initializer():
    return keras.initializers.TruncatedNormal(stddev=0.02)  # BERT's


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


@keras.saving.register_keras_serializable(package="finetunekit")
class WarmStartBackbone(keras_hub.models.Backbone):
    """A BERT-shaped encoder-decoder: BERT encoder layers, decoder layers with cross-attention.

    This constructor makes random weights; `fk.backbones.warm_start.warm_start_backbone(bert)`
    copies a BERT checkpoint into one.

    Args:
        vocabulary_size, num_layers, num_heads, hidden_dim, intermediate_dim,
            dropout, max_sequence_length, num_segments: as for
            `keras_hub.models.BertBackbone` (`num_layers` encoder layers and
            as many decoder layers).
        dtype: dtype policy.
        **kwargs: `keras_hub.models.Backbone` arguments.

    Returns:
        `{"encoder_sequence_output", "decoder_sequence_output", "logits"}`.

    Example:
    ```python
    backbone = WarmStartBackbone(vocabulary_size=30522, num_layers=2, num_heads=2,
                                 hidden_dim=16, intermediate_dim=32)
    ```
    """

    def __init__(
        self, vocabulary_size, num_layers, num_heads, hidden_dim, intermediate_dim,
        dropout=0.1, max_sequence_length=512, num_segments=2, dtype=None, **kwargs,
    ):
        self._make_embeddings(vocabulary_size, hidden_dim, max_sequence_length, num_segments,
                              dropout, dtype)
        options = dict(
            num_heads=num_heads, intermediate_dim=intermediate_dim, activation=gelu_approximate(),
            dropout=dropout, layer_norm_epsilon=1e-12, dtype=dtype,
        )
        self.encoder_transformer_layers = [
            keras_hub.layers.TransformerEncoder(
                kernel_initializer=_initializer(), name=f"encoder_layer_{i}", **options
            )
            for i in range(num_layers)
        ]
        self.decoder_transformer_layers = [
            keras_hub.layers.TransformerDecoder(
                kernel_initializer=_initializer(), name=f"decoder_layer_{i}", **options
            )
            for i in range(num_layers)
        ]
        self.logit_bias = LogitBias(vocabulary_size, dtype=dtype, name="logit_bias")
        inputs = {name: keras.Input(shape=(None,), dtype="int32", name=name) for name in INPUTS}
        super().__init__(inputs=inputs, outputs=self._graph(inputs), dtype=dtype, **kwargs)
        self.vocabulary_size = vocabulary_size
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.hidden_dim = hidden_dim
        self.intermediate_dim = intermediate_dim
        self.dropout = dropout
        self.max_sequence_length = max_sequence_length
        self.num_segments = num_segments

    def _make_embeddings(self, vocabulary_size, hidden_dim, positions, segments, dropout, dtype):
        self.token_embedding = keras_hub.layers.ReversibleEmbedding(
            vocabulary_size, hidden_dim, embeddings_initializer=_initializer(), dtype=dtype,
            name="token_embedding",
        )
        self.position_embedding = keras_hub.layers.PositionEmbedding(
            positions, initializer=_initializer(), dtype=dtype, name="position_embedding"
        )
        self.segment_embedding = keras.layers.Embedding(
            segments, hidden_dim, embeddings_initializer=_initializer(), dtype=dtype,
            name="segment_embedding",
        )
        self.embeddings_add = keras.layers.Add(dtype=dtype, name="embeddings_add")
        self.embeddings_layer_norm = keras.layers.LayerNormalization(
            epsilon=1e-12, dtype=dtype, name="embeddings_layer_norm"
        )
        self.embeddings_dropout = keras.layers.Dropout(
            dropout, dtype=dtype, name="embeddings_dropout"
        )

    def _graph(self, inputs):
        encoded = self.call_encoder(inputs["encoder_token_ids"], inputs["encoder_padding_mask"])
        decoded = self.embed(inputs["decoder_token_ids"])
        for layer in self.decoder_transformer_layers:  # causal self-attention by default
            decoded = layer(
                decoded, encoded, decoder_padding_mask=inputs["decoder_padding_mask"],
                encoder_padding_mask=inputs["encoder_padding_mask"],
            )
        return {
            "encoder_sequence_output": encoded,
            "decoder_sequence_output": decoded,
            "logits": self.lm_logits(decoded),
        }

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
        return {**super().get_config(), **{key: getattr(self, key) for key in CONFIG_KEYS}}


class WarmStartSeq2SeqLM(keras_hub.models.BartSeq2SeqLM):
    """Generation on a `WarmStartBackbone` with keras-hub's samplers.

    BART's key/value cache set-up and `generate_step` are reused as they
    are; the encoder and the cached decoder call are the warm start's own.

    Args:
        backbone: a `WarmStartBackbone`.
        preprocessor: a `keras_hub.models.Seq2SeqLMPreprocessor` with a BERT
            tokenizer, or None.

    Returns:
        Next-token logits.

    Example:
    ```python
    lm = WarmStartSeq2SeqLM(backbone, preprocessor)
    lm.generate(["the cat sat"], max_length=16)
    ```
    """

    backbone_cls = WarmStartBackbone
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
        """Logits, hidden states and both caches for `decoder_token_ids` (see BART's)."""
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
        return self.backbone.lm_logits(x), x, self_attention_cache, cross_attention_cache
