"""Audio backbones: keras-hub Whisper from a preset name, a local preset folder or a Backbone object.

The FineTuner graph takes raw waveforms (`audio`, `audio_length`,
`sample_rate`); `finetunekit.layers.AudioFeaturizer` (mono, resampling,
log-mel) and training-only audio augmentation run inside the model, then
Whisper's encoder. Heads that ask for `"decoder_logits"` (speech to text) also
get Whisper's decoder, fed teacher-forcing token ids, with its output
projection tied to the token embedding.
"""

import json
import os
import sys

import keras

from finetunekit.backbones.base import BackboneKind, check_layer_decay, check_needs
from finetunekit.freezing import lora_paths, train_lora_only

AUDIO_CLASSES = ("WhisperBackbone",)
STEM = ("encoder_conv_layer_1", "encoder_conv_layer_2", "encoder_padder",
        "encoder_position_embedding", "encoder_embeddings_add", "encoder_embeddings_dropout")
DECODER_STEM = ("decoder_embeddings", "decoder_embeddings_dropout")
STRIDE, SAMPLING_RATE = 160, 16000


def is_audio_backbone(value):
    """True for a keras-hub Whisper backbone instance."""
    keras_hub = sys.modules.get("keras_hub")
    return keras_hub is not None and type(value).__name__ in AUDIO_CLASSES and isinstance(
        value, keras_hub.models.Backbone
    )


def is_audio_preset(value):
    """True for a keras-hub Whisper preset name or a local preset folder of a Whisper backbone."""
    if not isinstance(value, (str, os.PathLike)):
        return False
    value = os.fspath(value)
    config = os.path.join(value, "config.json")
    if os.path.isdir(value):
        if not os.path.isfile(config):
            return False
        with open(config, encoding="utf-8") as f:
            return json.load(f).get("class_name") in AUDIO_CLASSES
    if os.sep in value or "." in value:
        return False
    import keras_hub

    return value in keras_hub.models.WhisperBackbone.presets


class AudioBackbone(BackboneKind):
    """A keras-hub Whisper encoder (and decoder for speech to text) on raw waveforms.

    Args:
        backbone: str or `keras_hub.models.WhisperBackbone`. A preset name
            (`"whisper_tiny_en"`), a local preset folder, or a backbone
            instance (pass `preprocessor=` a `WhisperTokenizer` for speech to
            text).
        weights: `"pretrained"`/`"imagenet"` (the preset's weights) or `None`.
        preprocessing: `"auto"` (Whisper's log-mel features).
        policy: str. Dtype policy name.
        preprocessor: a keras-hub `WhisperTokenizer` or None (the preset's own).
        lora_rank: int or None. LoRA of this rank on the query and value
            projections of every attention layer (keras-hub `enable_lora`);
            only LoRA weights train (with `unfreeze=0`).
        layer_decay: float in (0, 1] or None. Layer-wise learning-rate decay.

    Example:
    ```python
    ft = fk.FineTuner(backbone="whisper_tiny_en",
                      head=fk.ClassificationHead(num_classes=12, pooling="mean"))
    ft.fit("speech_commands/")
    ```
    """

    name = "audio"
    modality = "audio"
    has_decoder = True
    description = 'a keras-hub Whisper preset, a Whisper preset folder or a keras_hub WhisperBackbone'
    default_learning_rates = (1e-3, 5e-5)

    @classmethod
    def matches(cls, backbone):
        return is_audio_backbone(backbone) or is_audio_preset(backbone)

    def __init__(
        self, backbone, weights="imagenet", input_shape=None, preprocessing="auto",
        policy="float32", architecture=None, sequence_length=None, preprocessor=None,
        lora_rank=None, layer_decay=None,
    ):
        del architecture
        for option, value in (("input_shape", input_shape), ("sequence_length", sequence_length)):
            if value is not None:
                raise ValueError(
                    f"`{option}` does not apply to an audio backbone (clips are padded per batch "
                    f"up to the backbone's longest input). Received: {option}={value!r}"
                )
        if preprocessing not in ("auto", "none"):
            raise ValueError(
                'For an audio backbone `preprocessing` must be "auto" (the backbone\'s log-mel '
                f"features, inside the model). Received: preprocessing={preprocessing!r}"
            )
        if weights not in (None, "imagenet", "pretrained"):
            raise ValueError(
                'For an audio backbone `weights` must be "pretrained" (the preset\'s weights) or '
                f"None (random). Received: weights={weights!r}"
            )
        self.layer_decay = check_layer_decay(layer_decay)
        if lora_rank is not None and (isinstance(lora_rank, bool) or int(lora_rank) < 1):
            raise ValueError(f"`lora_rank` must be a positive int. Received: lora_rank={lora_rank!r}")
        self.model, self.preprocessor = _load(backbone, weights, policy, preprocessor)
        self.uses_decoder = False
        self.lora_rank = None if lora_rank is None else int(lora_rank)
        if self.lora_rank is not None:
            self.model.enable_lora(self.lora_rank)  # query and value projections of every attention
        self._lora_paths = lora_paths(self.model)
        self.max_seconds = self.model.max_encoder_sequence_length * STRIDE / SAMPLING_RATE

    @property
    def tokenizer(self):
        return self.preprocessor

    def _encoder(self, features):
        model = self.model
        x = keras.activations.gelu(model.encoder_conv_layer_1(features), approximate=False)
        x = model.encoder_padder(x)
        x = keras.activations.gelu(model.encoder_conv_layer_2(x), approximate=False)
        x = model.encoder_embeddings_add((x, model.encoder_position_embedding(x)))
        x = model.encoder_embeddings_dropout(x)
        for layer in model.encoder_transformer_layers:
            x = layer(x)
        return model.encoder_layer_norm(x)

    def decode(self, encoder_output, token_ids, padding_mask):
        """Whisper's decoder: token ids and encoder output -> vocabulary logits."""
        model = self.model
        x = model.decoder_embeddings_dropout(model.decoder_embeddings(token_ids))
        for layer in model.decoder_transformer_layers:
            x = layer(decoder_sequence=x, encoder_sequence=encoder_output,
                      decoder_padding_mask=padding_mask)
        x = model.decoder_layer_norm(x)
        return model.token_embedding(x, reverse=True)

    def build(self, needs=("features",), augmentation=()):
        """Raw waveforms -> `{"features", "padding_mask"[, "decoder_logits"]}`."""
        from finetunekit.layers.audio import AudioFeaturizer

        check_needs(self, needs)
        stages = [getattr(layer, "stage", None) for layer in augmentation]
        if any(stage not in ("waveform", "spectrogram") for stage in stages):
            raise ValueError(
                "`augment` for an audio backbone takes the audio keywords noise, gain_db, "
                "time_shift, spec_mask (and seed); image augmentation does not apply."
            )
        inputs = {
            "audio": keras.Input(shape=(None, None), dtype="float32", name="audio"),
            "audio_length": keras.Input(shape=(), dtype="int32", name="audio_length"),
            "sample_rate": keras.Input(shape=(), dtype="int32", name="sample_rate"),
        }
        audio = inputs["audio"]
        for layer in augmentation:
            audio = layer(audio) if layer.stage == "waveform" else audio
        featurizer = AudioFeaturizer(num_mels=self.model.num_mels, stride=STRIDE,
                                     sampling_rate=SAMPLING_RATE, name="audio_featurizer")
        features, frame_mask = featurizer(audio, inputs["audio_length"], inputs["sample_rate"])
        for layer in augmentation:
            features = layer(features) if layer.stage == "spectrogram" else features
        encoded = self._encoder(features)
        outputs = {"features": encoded, "padding_mask": frame_mask[:, ::2]}
        if "decoder_logits" in needs:
            self.uses_decoder = True
            inputs["decoder_token_ids"] = keras.Input(
                shape=(None,), dtype="int32", name="decoder_token_ids")
            inputs["decoder_padding_mask"] = keras.Input(
                shape=(None,), dtype="bool", name="decoder_padding_mask")
            outputs["decoder_logits"] = self.decode(
                encoded, inputs["decoder_token_ids"], inputs["decoder_padding_mask"])
        return inputs, outputs

    def groups(self):
        """`(block_name, layers)`: the stem, then one block per layer (encoder and decoder layer i)."""
        model = self.model
        stem = [getattr(model, name) for name in STEM]
        encoder = list(model.encoder_transformer_layers)
        blocks = [[layer] for layer in encoder]
        blocks[-1].append(model.encoder_layer_norm)
        if self.uses_decoder:
            stem += [getattr(model, name) for name in DECODER_STEM]
            for block, layer in zip(blocks, model.decoder_transformer_layers):
                block.append(layer)
            blocks[-1].append(model.decoder_layer_norm)
        return [("stem", stem)] + [(f"layer_{i}", block) for i, block in enumerate(blocks)]

    def apply_unfreeze(self, unfreeze):
        """Applies `unfreeze` (LoRA: only LoRA weights train); the decoder stays frozen when unused."""
        if self.lora_rank is not None:
            keep = [p for p in self._lora_paths if self.uses_decoder or "decoder" not in p]
            return train_lora_only(self.model, keep, unfreeze)
        blocks = super().apply_unfreeze(unfreeze)
        if not self.uses_decoder:
            for name in DECODER_STEM + ("decoder_layer_norm",):
                getattr(self.model, name).trainable = False
            for layer in self.model.decoder_transformer_layers:
                layer.trainable = False
        return blocks

    def data_pipeline(self, head, augmentation=()):
        from finetunekit.data.audio_pipeline import AudioPipeline

        return AudioPipeline(head, SAMPLING_RATE, self.max_seconds, self.tokenizer,
                             max_tokens=self.model.max_decoder_sequence_length)

    def serving_signature(self):
        """Raw waveforms padded per batch, their real lengths and their sample rate."""
        from finetunekit.backbones.audio_serving import serving_signature

        return serving_signature(self)

    def cache_blocker(self):
        """Pooled encoder features are cached for classification; not for speech to text."""
        if self.lora_rank is not None:
            return "LoRA adapters in the encoder train"
        if self.uses_decoder:
            return ("speech to text trains Whisper's decoder (part of the backbone) on the "
                    "encoder output, which is not cached (see docs/speech.md)")
        return None

    def config(self):
        preprocessor = None
        if self.preprocessor is not None:
            preprocessor = keras.saving.serialize_keras_object(self.preprocessor)
        return {"preprocessor": preprocessor, "lora_rank": self.lora_rank,
                "layer_decay": self.layer_decay}


def _load(backbone, weights, policy, preprocessor):
    """Returns `(model, tokenizer or None)` from a Backbone instance or a preset."""
    import keras_hub

    if is_audio_backbone(backbone):
        if backbone.dtype_policy.name != policy:
            rebuilt = type(backbone).from_config({**backbone.get_config(), "dtype": policy})
            rebuilt.set_weights(backbone.get_weights())
            backbone = rebuilt
        return backbone, preprocessor
    preset = os.fspath(backbone)
    model = keras_hub.models.Backbone.from_preset(
        preset, load_weights=weights is not None, dtype=policy
    )
    if preprocessor is None:
        try:
            preprocessor = keras_hub.models.WhisperTokenizer.from_preset(preset)
        except (ValueError, FileNotFoundError, OSError):
            preprocessor = None  # a preset without a tokenizer: classification only
    return model, preprocessor
