"""Whisper's pieces for the audio backbone kind: log-mel converter, encoder, decoder, cached steps.

`finetunekit.families.speech.kind.AudioBackbone` holds one family of parts (this
one or `finetunekit.families.speech.moonshine`); each family says how raw waveforms
become encoder features and how its decoder runs, in training (teacher
forcing) and in generation (one step at a time with key/value caches).
"""

import keras
from keras import ops

STEM = ("encoder_conv_layer_1", "encoder_conv_layer_2", "encoder_padder",
        "encoder_position_embedding", "encoder_embeddings_add", "encoder_embeddings_dropout")
DECODER_STEM = ("decoder_embeddings", "decoder_embeddings_dropout")
STRIDE, SAMPLING_RATE = 160, 16000


class WhisperParts:
    """A keras-hub `WhisperBackbone` split into converter, encoder and decoder.

    Args:
        model: a `keras_hub.models.WhisperBackbone`.
    """

    class_name = "WhisperBackbone"
    sampling_rate = SAMPLING_RATE
    min_seconds = 0.0
    feature_stages = ("waveform", "spectrogram")

    def __init__(self, model):
        self.model = model
        self.max_seconds = model.max_encoder_sequence_length * STRIDE / SAMPLING_RATE
        self.max_decoder_tokens = model.max_decoder_sequence_length

    @staticmethod
    def presets():
        import keras_hub

        return keras_hub.models.WhisperBackbone.presets

    @staticmethod
    def load_preprocessor(preset):
        """The preset's `WhisperTokenizer`."""
        import keras_hub

        return keras_hub.models.WhisperTokenizer.from_preset(preset)

    @staticmethod
    def tokenizer_of(preprocessor):
        return preprocessor

    def converter(self, preprocessor=None):
        from finetunekit.families.speech.layers import AudioFeaturizer

        return AudioFeaturizer(num_mels=self.model.num_mels, stride=STRIDE,
                               sampling_rate=SAMPLING_RATE, name="audio_featurizer")

    def encode(self, features, frame_mask):
        """Log-mel features -> `(encoder output, its padding mask)`."""
        model = self.model
        x = keras.activations.gelu(model.encoder_conv_layer_1(features), approximate=False)
        x = model.encoder_padder(x)
        x = keras.activations.gelu(model.encoder_conv_layer_2(x), approximate=False)
        x = model.encoder_embeddings_add((x, model.encoder_position_embedding(x)))
        x = model.encoder_embeddings_dropout(x)
        for layer in model.encoder_transformer_layers:
            x = layer(x)
        return model.encoder_layer_norm(x), frame_mask[:, ::2]

    def decode(self, encoder_output, encoder_mask, token_ids, padding_mask):
        """Whisper's decoder: token ids and encoder output -> vocabulary logits."""
        model = self.model
        x = model.decoder_embeddings_dropout(model.decoder_embeddings(token_ids))
        for layer in model.decoder_transformer_layers:
            x = layer(decoder_sequence=x, encoder_sequence=encoder_output,
                      decoder_padding_mask=padding_mask)
        x = model.decoder_layer_norm(x)
        return model.token_embedding(x, reverse=True)

    def stem(self):
        return [getattr(self.model, name) for name in STEM]

    def encoder_blocks(self):
        return list(self.model.encoder_transformer_layers), self.model.encoder_layer_norm

    def decoder_stem(self):
        return [getattr(self.model, name) for name in DECODER_STEM]

    def decoder_blocks(self):
        return list(self.model.decoder_transformer_layers), self.model.decoder_layer_norm

    def steps(self):
        return WhisperSteps(self.model)


class WhisperSteps:
    """Cached decoding steps of a Whisper decoder (self- and cross-attention caches)."""

    def __init__(self, backbone):
        self.backbone = backbone

    def start(self, encoder_output, encoder_mask, rows, max_length):
        backbone = self.backbone
        heads = backbone.num_heads
        head_dim = backbone.hidden_dim // heads
        layers = len(backbone.decoder_transformer_layers)
        length = int(ops.shape(encoder_output)[1])
        dtype = encoder_output.dtype
        self_cache = [ops.zeros((rows, 2, max_length, heads, head_dim), dtype)
                      for _ in range(layers)]
        cross_cache = [ops.zeros((rows, 2, length, heads, head_dim), dtype) for _ in range(layers)]
        return {"self": self_cache, "cross": cross_cache, "encoder": encoder_output, "first": True}

    def step(self, state, token_ids, index):
        """Runs `token_ids` (from position `index`) -> `(log_probs of the last one, state)`."""
        backbone = self.backbone
        x = backbone.decoder_embeddings(token_ids, start_index=index)
        new_self, new_cross = [], []
        for i, layer in enumerate(backbone.decoder_transformer_layers):
            x, layer_self, layer_cross = layer(
                decoder_sequence=x, encoder_sequence=state["encoder"],
                self_attention_cache=state["self"][i], self_attention_cache_update_index=index,
                cross_attention_cache=state["cross"][i],
                cross_attention_cache_update_index=0 if state["first"] else None,
            )
            new_self.append(layer_self)
            new_cross.append(layer_cross)
        x = backbone.decoder_layer_norm(x[:, -1:, :])
        logits = ops.cast(backbone.token_embedding(x, reverse=True)[:, 0, :], "float32")
        state = {**state, "self": new_self, "cross": new_cross, "first": False}
        return ops.log_softmax(logits, axis=-1), state

    def reorder(self, state, order):
        return {**state, "self": [ops.take(c, order, axis=0) for c in state["self"]],
                "cross": [ops.take(c, order, axis=0) for c in state["cross"]]}
