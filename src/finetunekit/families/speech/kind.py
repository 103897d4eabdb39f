"""Audio backbones: keras-hub Whisper and Moonshine from a preset name, a preset folder or an object.

The FineTuner graph takes raw waveforms (`audio`, `audio_length`,
`sample_rate`); the backbone family's converter runs inside the model
(`finetunekit.layers.AudioFeaturizer`: mono, resampling, log-mel for Whisper;
`finetunekit.layers.WaveformConverter`: mono 16 kHz waveforms for Moonshine),
with training-only audio augmentation, then the encoder. Heads that ask for
`"decoder_logits"` (speech to text) also get the decoder, fed teacher-forcing
token ids, with its output projection tied to the token embedding. What
differs between families lives in `backbones/whisper.py` and
`backbones/moonshine.py` (their "parts").
"""

import contextlib
import os
import sys

import keras

from finetunekit.core.freezing import lora_paths, train_lora_only
from finetunekit.core.kind import BackboneKind, check_layer_decay, check_needs
from finetunekit.core.presets import preset_class_name
from finetunekit.families.speech.moonshine import MoonshineParts, follow_block_policies
from finetunekit.families.speech.whisper import WhisperParts

FAMILIES = (WhisperParts, MoonshineParts)
AUDIO_CLASSES = tuple(family.class_name for family in FAMILIES)
TASK_CLASSES = ("MoonshineAudioToText",)


def family_of(model):
    """The parts class (`WhisperParts`, `MoonshineParts`) of a keras-hub audio backbone."""
    return next(f for f in FAMILIES if f.class_name == type(model).__name__)


def _keras_hub_instance(value, names, base):
    keras_hub = sys.modules.get("keras_hub")
    return (keras_hub is not None and type(value).__name__ in names
            and isinstance(value, getattr(keras_hub.models, base)))


def is_audio_backbone(value):
    """True for a keras-hub Whisper or Moonshine backbone, or a `MoonshineAudioToText` task."""
    return (_keras_hub_instance(value, AUDIO_CLASSES, "Backbone")
            or _keras_hub_instance(value, TASK_CLASSES, "Task"))


def is_audio_preset(value):
    """True for a Whisper or Moonshine preset name or a local preset folder of one."""
    if not isinstance(value, (str, os.PathLike)):
        return False
    value = os.fspath(value)
    if os.path.isdir(value):
        return preset_class_name(value) in AUDIO_CLASSES
    if os.sep in value or "." in value:
        return False
    return any(value in family.presets() for family in FAMILIES)


class AudioBackbone(BackboneKind):
    """A keras-hub Whisper or Moonshine encoder (and decoder for speech to text) on raw waveforms.

    Args:
        backbone: str, a `keras_hub.models.WhisperBackbone` or
            `MoonshineBackbone`, or a `keras_hub.models.MoonshineAudioToText`
            task (its backbone and preprocessor are used). A preset name
            (`"whisper_tiny_en"`, `"moonshine_tiny_en"`), a local preset
            folder, or an instance (pass `preprocessor=` a tokenizer for
            speech to text).
        weights: `"pretrained"`/`"imagenet"` (the preset's weights) or `None`.
        preprocessing: `"auto"` (the backbone's own input: Whisper's log-mel
            features, Moonshine's 16 kHz waveforms).
        policy: str. Dtype policy name.
        preprocessor: a keras-hub `WhisperTokenizer`, `MoonshineTokenizer` or
            `MoonshineAudioToTextPreprocessor` (its audio converter's
            `do_normalize` is kept), or None (the preset's own).
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
    provides = ("features", "padding_mask", "decoder_logits")
    description = ("a keras-hub Whisper or Moonshine preset, a preset folder of one, a keras_hub "
                   "WhisperBackbone / MoonshineBackbone or a MoonshineAudioToText")
    default_learning_rates = (1e-3, 5e-5)
    priority = 25  # before seq2seq (Moonshine's task is a Seq2SeqLM) and text (Whisper has a tokenizer)

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
                'For an audio backbone `preprocessing` must be "auto" (the backbone\'s own log-mel '
                f"features or waveforms, inside the model). Received: preprocessing={preprocessing!r}"
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
        self.parts = family_of(self.model)(self.model)
        self.uses_decoder = False
        self.lora_rank = None if lora_rank is None else int(lora_rank)
        if self.lora_rank is not None:
            self.model.enable_lora(self.lora_rank)  # query and value projections of every attention
        self._lora_paths = lora_paths(self.model)
        self.max_seconds = self.parts.max_seconds

    @property
    def tokenizer(self):
        return None if self.preprocessor is None else self.parts.tokenizer_of(self.preprocessor)

    def decoder_steps(self):
        """Cached one-step decoding for generation (`SpeechToTextHead.predict_text`)."""
        return self.parts.steps()

    @property
    def max_decoder_tokens(self):
        return self.parts.max_decoder_tokens

    def build(self, needs=("features",), augmentation=()):
        """Raw waveforms -> `{"features", "padding_mask"[, "decoder_logits"]}`."""
        check_needs(self, needs)
        stages = [getattr(layer, "stage", None) for layer in augmentation]
        if any(stage not in ("waveform", "spectrogram") for stage in stages):
            raise ValueError(
                "`augment` for an audio backbone takes the audio keywords noise, gain_db, "
                "time_shift, spec_mask (and seed); image augmentation does not apply."
            )
        if "spectrogram" in stages and "spectrogram" not in self.parts.feature_stages:
            raise ValueError(
                "`spec_mask` masks log-mel features, which a Moonshine backbone does not compute "
                "(it reads waveforms). Use noise, gain_db and time_shift, or a Whisper backbone."
            )
        inputs = {
            "audio": keras.Input(shape=(None, None), dtype="float32", name="audio"),
            "audio_length": keras.Input(shape=(), dtype="int32", name="audio_length"),
            "sample_rate": keras.Input(shape=(), dtype="int32", name="sample_rate"),
        }
        audio = inputs["audio"]
        for layer in augmentation:
            audio = layer(audio) if layer.stage == "waveform" else audio
        converter = self.parts.converter(self.preprocessor)
        features, mask = converter(audio, inputs["audio_length"], inputs["sample_rate"])
        for layer in augmentation:
            features = layer(features) if layer.stage == "spectrogram" else features
        encoded, encoded_mask = self.parts.encode(features, mask)
        outputs = {"features": encoded, "padding_mask": encoded_mask}
        if "decoder_logits" in needs:
            self.uses_decoder = True
            inputs["decoder_token_ids"] = keras.Input(
                shape=(None,), dtype="int32", name="decoder_token_ids")
            inputs["decoder_padding_mask"] = keras.Input(
                shape=(None,), dtype="bool", name="decoder_padding_mask")
            outputs["decoder_logits"] = self.parts.decode(
                encoded, encoded_mask, inputs["decoder_token_ids"], inputs["decoder_padding_mask"])
        return inputs, outputs

    def groups(self):
        """`(block_name, layers)`: the stem, then one block per layer (encoder and decoder layer i)."""
        stem = self.parts.stem()
        encoder, encoder_norm = self.parts.encoder_blocks()
        blocks = [[layer] for layer in encoder]
        blocks[-1].append(encoder_norm)
        if self.uses_decoder:
            stem += self.parts.decoder_stem()
            decoder, decoder_norm = self.parts.decoder_blocks()
            extra = [[] for _ in range(len(decoder) - len(blocks))]
            blocks = extra + blocks  # a deeper decoder: its first layers form blocks of their own
            for block, layer in zip(blocks[len(blocks) - len(decoder):], decoder):
                block.append(layer)
            blocks[-1].append(decoder_norm)
        return [("stem", stem)] + [(f"layer_{i}", block) for i, block in enumerate(blocks)]

    def apply_unfreeze(self, unfreeze):
        """Applies `unfreeze` (LoRA: only LoRA weights train); the decoder stays frozen when unused."""
        if self.lora_rank is not None:
            keep = [p for p in self._lora_paths if self.uses_decoder or "decoder" not in p]
            return train_lora_only(self.model, keep, unfreeze)
        blocks = super().apply_unfreeze(unfreeze)
        if not self.uses_decoder:
            decoder, decoder_norm = self.parts.decoder_blocks()
            for layer in self.parts.decoder_stem() + decoder + [decoder_norm]:
                layer.trainable = False
        return blocks

    def data_pipeline(self, head, augmentation=()):
        from finetunekit.families.speech.pipeline import AudioPipeline

        return AudioPipeline(head, self.parts.sampling_rate, self.max_seconds, self.tokenizer,
                             max_tokens=self.max_decoder_tokens,
                             min_seconds=self.parts.min_seconds)

    def serving_signature(self):
        """What `ft.export` serves on: raw waveforms, their real lengths and their sample rate.

        A classifier on a Whisper encoder is served on the same raw inputs as
        the Keras model; for speech to text the same inputs go to the head's
        greedy transcription graph (`finetunekit.families.speech.serving`).

        Returns:
            `{"audio": float32 (batch, samples, channels)` (padded with
            anything after each clip's end), `"audio_length": int32 (batch,)`
            (real samples: padded frames are kept out of the pooling),
            `"sample_rate": int32 (batch,)}` (one rate per batch; resampled to
            16 kHz inside).
        """
        import tensorflow as tf

        return {
            "audio": tf.TensorSpec((None, None, None), tf.float32, name="audio"),
            "audio_length": tf.TensorSpec((None,), tf.int32, name="audio_length"),
            "sample_rate": tf.TensorSpec((None,), tf.int32, name="sample_rate"),
        }

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


@contextlib.contextmanager
def _policy_scope(policy):
    """Yields the `dtype=` to build a backbone with under `policy`.

    keras-hub's MoonshineBackbone gives its `dtype` to a `keras.Input`, which
    refuses mixed policies: those are set as the global policy while it is
    built (and `dtype=None` passed) instead.
    """
    if not policy.startswith("mixed_"):
        yield policy
        return
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield None
    finally:
        keras.config.set_dtype_policy(previous)


def _load(backbone, weights, policy, preprocessor):
    """Returns `(model, preprocessor or None)` from a Backbone / Task instance or a preset."""
    import keras_hub

    if isinstance(backbone, keras_hub.models.Task):  # MoonshineAudioToText: its backbone
        preprocessor = preprocessor or backbone.preprocessor
        backbone = backbone.backbone
    if is_audio_backbone(backbone):
        if backbone.dtype_policy.name != policy:
            with _policy_scope(policy) as dtype:
                rebuilt = type(backbone).from_config({**backbone.get_config(), "dtype": dtype})
            rebuilt.set_weights(backbone.get_weights())
            backbone = follow_block_policies(rebuilt)
        return backbone, preprocessor
    preset = os.fspath(backbone)
    with _policy_scope(policy) as dtype:
        model = keras_hub.models.Backbone.from_preset(
            preset, load_weights=weights is not None, dtype=dtype
        )
    follow_block_policies(model)
    if preprocessor is None:
        try:
            preprocessor = family_of(model).load_preprocessor(preset)
        except (ValueError, FileNotFoundError, OSError):
            preprocessor = None  # a preset without a tokenizer: classification only
    return model, preprocessor
