"""Moonshine's pieces for the audio backbone kind: waveform converter, encoder, decoder, cached steps.

Moonshine reads 16 kHz waveforms directly (three strided convolutions, no
log-mel), so its in-model converter is `finetunekit.layers.WaveformConverter`
(mono, resampling, `MoonshineAudioConverter`'s optional normalisation) and
the per-sample mask becomes a per-frame mask with keras-hub's own
`compute_output_lengths`. Generation steps use
`keras_hub.models.MoonshineAudioToText.call_decoder_with_cache`.
"""

from keras import ops

from finetunekit.core._keras_compat import (
    key_value_projections,
    load_preset_tokenizer,
    moonshine_frame_mask,
    moonshine_output_lengths,
    moonshine_positions,
    sublayers,
)

SAMPLING_RATE = 16000
#: keras-hub's `MoonshineAudioConverter` accepts 0.1 to 64 s.
MIN_SECONDS, MAX_SECONDS = 0.1, 64.0
STEM = ("conv1", "tanh_after_conv1", "group_norm", "conv2", "gelu_after_conv2", "conv3",
        "gelu_after_conv3", "encoder_rotary_embedding", "encoder_dropout")
DECODER_STEM = ("token_embedding", "decoder_rotary_embedding", "decoder_dropout")


def _masked_group_norm(layer, x, mask):
    """keras-hub's one-group `GroupNormalization`, with statistics over real frames only.

    Padding then changes no clip's features (the stock layer averages the
    padded frames in too, so a clip's output would depend on its batch).
    """
    weight = ops.cast(mask, x.dtype)[..., None]
    count = ops.maximum(ops.sum(weight, axis=(1, 2), keepdims=True), 1.0)
    mean = ops.mean(ops.sum(x * weight, axis=1, keepdims=True), axis=2, keepdims=True) / count
    var = ops.mean(ops.sum(ops.square(x - mean) * weight, axis=1, keepdims=True), axis=2,
                   keepdims=True) / count
    x = (x - mean) * ops.rsqrt(var + layer.epsilon)
    return (x * layer.gamma + layer.beta) * weight


def follow_block_policies(model):
    """Gives a mixed-precision MoonshineBackbone's block sublayers their block's dtype policy.

    keras-hub builds the attention, normalisation and feed-forward layers of
    each block with `dtype=block.dtype` (the variable dtype, float32), so under
    a mixed policy they would compute in float32 between bfloat16 residuals and
    fail. Weights stay float32 either way.
    """
    if type(model).__name__ != "MoonshineBackbone" or not model.dtype_policy.name.startswith(
        "mixed_"
    ):
        return model
    for block in model.encoder_blocks + model.decoder_blocks:
        for layer in sublayers(block):
            if layer.dtype_policy.name == "float32":
                layer.dtype_policy = block.dtype_policy
    return model


def _frames(lengths, kernel, stride):
    return ops.maximum(ops.floor((lengths - kernel) / stride) + 1, 0.0)


class MoonshineParts:
    """A keras-hub `MoonshineBackbone` split into converter, encoder and decoder.

    Args:
        model: a `keras_hub.models.MoonshineBackbone`.
    """

    class_name = "MoonshineBackbone"
    sampling_rate = SAMPLING_RATE
    min_seconds = MIN_SECONDS
    max_seconds = MAX_SECONDS
    feature_stages = ("waveform",)

    def __init__(self, model):
        self.model = model
        self.max_decoder_tokens = model.max_position_embeddings

    @staticmethod
    def presets():
        import keras_hub

        return keras_hub.models.MoonshineBackbone.presets

    @staticmethod
    def load_preprocessor(preset):
        """The preset's `MoonshineAudioToTextPreprocessor`, or its `MoonshineTokenizer` alone."""
        import keras_hub

        try:
            return keras_hub.models.MoonshineAudioToTextPreprocessor.from_preset(preset)
        except (TypeError, ValueError, FileNotFoundError, OSError):  # no audio converter saved
            # MoonshineTokenizer.from_preset looks for a Llama backbone: load tokenizer.json directly.
            return load_preset_tokenizer(preset, keras_hub.models.MoonshineTokenizer)

    @staticmethod
    def tokenizer_of(preprocessor):
        return getattr(preprocessor, "tokenizer", preprocessor)

    def converter(self, preprocessor=None):
        from finetunekit.families.speech.layers import WaveformConverter

        audio_converter = getattr(preprocessor, "audio_converter", None)
        normalize = bool(getattr(audio_converter, "do_normalize", False))
        return WaveformConverter(SAMPLING_RATE, do_normalize=normalize, name="audio_converter")

    def encode(self, waveform, sample_mask):
        """Waveforms `(batch, samples, 1)` -> `(encoder output, its padding mask)`."""
        model = self.model
        lengths = ops.sum(ops.cast(sample_mask, "int32"), axis=1)
        x = model.tanh_after_conv1(model.conv1(waveform))
        conv1_frames = ops.cast(_frames(ops.cast(lengths, "float32"), 127, 64), "int32")
        x = _masked_group_norm(model.group_norm, x, moonshine_frame_mask(model, x, conv1_frames))
        x = model.gelu_after_conv2(model.conv2(x))
        x = model.gelu_after_conv3(model.conv3(x))
        mask = moonshine_frame_mask(model, x, moonshine_output_lengths(lengths))
        rotary = model.encoder_rotary_embedding(moonshine_positions("encoder_positions")(x))
        x = model.encoder_dropout(x)
        for block in model.encoder_blocks:
            x = block(x, rotary, attention_mask=mask)
        return model.encoder_final_layer_norm(x), mask

    def decode(self, encoder_output, encoder_mask, token_ids, padding_mask):
        """Moonshine's decoder (rotary positions, tied output projection) -> vocabulary logits."""
        model = self.model
        rotary = model.decoder_rotary_embedding(moonshine_positions("decoder_positions")(token_ids))
        x = model.decoder_dropout(model.token_embedding(token_ids))
        for block in model.decoder_blocks:
            x = block(decoder_sequence=x, encoder_sequence=encoder_output, rotary_embedding=rotary,
                      decoder_padding_mask=padding_mask, encoder_padding_mask=encoder_mask)
        return model.token_embedding(model.decoder_post_norm(x), reverse=True)

    def stem(self):
        return [getattr(self.model, name) for name in STEM]

    def encoder_blocks(self):
        return list(self.model.encoder_blocks), self.model.encoder_final_layer_norm

    def decoder_stem(self):
        return [getattr(self.model, name) for name in DECODER_STEM]

    def decoder_blocks(self):
        return list(self.model.decoder_blocks), self.model.decoder_post_norm

    def steps(self):
        return MoonshineSteps(self.model)


class MoonshineSteps:
    """One-token decoding steps through keras-hub's `MoonshineAudioToText` caches."""

    def __init__(self, backbone):
        import keras_hub

        self.backbone = backbone
        self.task = keras_hub.models.MoonshineAudioToText(backbone)

    def start(self, encoder_output, encoder_mask, rows, max_length):
        backbone = self.backbone
        cross = []
        for layer in backbone.decoder_blocks:  # as MoonshineAudioToText._build_cache
            key_dense, value_dense = key_value_projections(layer.cross_attention)
            cross.append(ops.stack([key_dense(encoder_output), value_dense(encoder_output)],
                                   axis=1))
        head_dim = backbone.decoder_blocks[0].head_dim
        shape = (rows, len(backbone.decoder_blocks), 2, max_length,
                 backbone.decoder_num_heads, head_dim)
        return {"self": ops.zeros(shape, encoder_output.dtype), "cross": ops.stack(cross, axis=1),
                "encoder": encoder_output, "mask": encoder_mask}

    def step(self, state, token_ids, index):
        """Feeds `token_ids` one at a time from position `index` -> `(log_probs, state)`."""
        self_cache = state["self"]
        for offset in range(int(token_ids.shape[1])):
            logits, _, self_cache, _ = self.task.call_decoder_with_cache(
                state["encoder"], state["mask"], token_ids[:, offset:offset + 1],
                self_attention_cache=self_cache,
                self_attention_cache_update_index=index + offset,
                cross_attention_cache=state["cross"],
            )
        logits = ops.cast(logits[:, -1, :], "float32")
        return ops.log_softmax(logits, axis=-1), {**state, "self": self_cache}

    def reorder(self, state, order):
        return {**state, "self": ops.take(state["self"], order, axis=0)}

