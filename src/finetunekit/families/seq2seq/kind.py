"""Sequence-to-sequence backbones: keras-hub `Seq2SeqLM` families (BART, T5).

The FineTuner graph takes the four packed inputs of a keras-hub
`Seq2SeqLMPreprocessor` (`encoder_token_ids`, `encoder_padding_mask`,
`decoder_token_ids`, `decoder_padding_mask`) and gives the head the language
model's next-token logits (`"lm_logits"`, from keras-hub's own task model, so
BART's tied output embedding is kept). Generation uses the same backbone in a
keras-hub `Seq2SeqLM` with keras-hub's samplers (greedy, beam, top-k).
"""

import os
import sys

import keras

from finetunekit.core.freezing import UNFREEZE_PARTS, apply_unfreeze_parts, lora_paths
from finetunekit.core.kind import check_layer_decay
from finetunekit.core.presets import check_token_options, preset_backbone_class, with_policy
from finetunekit.generation.language_model import LanguageModelKind

SEQ2SEQ_INPUTS = (
    "encoder_token_ids", "encoder_padding_mask", "decoder_token_ids", "decoder_padding_mask",
)


def seq2seq_task_class(backbone_class):
    """The keras-hub `Seq2SeqLM` subclass built on `backbone_class`, or None."""
    import keras_hub

    pending, seen = [keras_hub.models.Seq2SeqLM], set()
    while pending:
        task = pending.pop()
        for sub in task.__subclasses__():
            if sub in seen:
                continue
            seen.add(sub)
            pending.append(sub)
            base = getattr(sub, "backbone_cls", None)
            if base is not None and issubclass(backbone_class, base):
                return sub
    return None


def is_seq2seq_backbone(value):
    """True for a keras-hub Backbone with encoder and decoder token inputs (BART, T5)."""
    keras_hub = sys.modules.get("keras_hub")
    if keras_hub is None or not isinstance(value, keras_hub.models.Backbone):
        return False
    names = list(value.input) if isinstance(value.input, dict) else []
    return {"encoder_token_ids", "decoder_token_ids"} <= set(names)


def is_seq2seq_preset(value):
    """True for a keras-hub Seq2SeqLM preset name, or an `hf://` handle / folder of one."""
    if not isinstance(value, (str, os.PathLike)):
        return False
    value = os.fspath(value)
    import keras_hub

    if value in keras_hub.models.Seq2SeqLM.presets:
        return True
    backbone_class = preset_backbone_class(value)
    return backbone_class is not None and seq2seq_task_class(backbone_class) is not None


class Seq2SeqBackbone(LanguageModelKind):
    """A keras-hub encoder-decoder (BART, T5) and its `Seq2SeqLMPreprocessor`.

    Args:
        backbone: a keras-hub `Seq2SeqLM` preset (`"bart_base_en"`), an
            `"hf://"` handle or local folder of one, or a `BartBackbone` /
            `T5Backbone` instance (then pass `preprocessor=`).
        weights: `"pretrained"`/`"imagenet"` (the preset's weights) or `None`.
        preprocessing: `"auto"` or `"none"`.
        policy: str. Dtype policy name.
        sequence_length: int or None. Longest source, in tokens (the
            preprocessor's `encoder_sequence_length`).
        preprocessor: a keras-hub `Seq2SeqLMPreprocessor` (e.g.
            `keras_hub.models.BartSeq2SeqLMPreprocessor`). Defaults to the preset's.
        lora_rank: int or None. LoRA on the attention of encoder and decoder.
        layer_decay: float in (0, 1] or None.
    """

    name = "seq2seq"
    modality = "text"
    description = 'a keras-hub Seq2SeqLM preset (BART, T5), its "hf://" handle or folder, or its Backbone'
    priority = 30  # after audio (Moonshine's task is a Seq2SeqLM), before text encoders
    default_learning_rates = (1e-3, 5e-5)
    input_names = SEQ2SEQ_INPUTS
    mask_input = "decoder_padding_mask"
    head_name = "a fk.Seq2SeqHead"
    noun = "a sequence-to-sequence backbone"

    @classmethod
    def matches(cls, backbone):
        return is_seq2seq_backbone(backbone) or is_seq2seq_preset(backbone)

    def __init__(
        self, backbone, weights="imagenet", input_shape=None, preprocessing="auto",
        policy="float32", architecture=None, sequence_length=None, preprocessor=None,
        lora_rank=None, layer_decay=None,
    ):
        del architecture
        check_token_options(input_shape, preprocessing, sequence_length, lora_rank, weights)
        if preprocessing == "clean":
            raise ValueError('preprocessing="clean" applies to text classification backbones only.')
        self.layer_decay = check_layer_decay(layer_decay)
        if is_seq2seq_backbone(backbone):
            if preprocessor is None:
                raise ValueError(
                    f"A keras_hub Backbone instance ({type(backbone).__name__}) needs its "
                    "tokenizer: pass preprocessor=keras_hub.models.BartSeq2SeqLMPreprocessor(...) "
                    "(or *.from_preset(...)) to FineTuner."
                )
            model = with_policy(backbone, policy)
        else:
            model, preprocessor = _load_preset(os.fspath(backbone), weights, policy, preprocessor)
        self.task_class = seq2seq_task_class(type(model))
        if self.task_class is None or not hasattr(preprocessor, "decoder_sequence_length"):
            raise ValueError(
                f"{type(model).__name__} with {type(preprocessor).__name__} cannot generate text: "
                "a Seq2SeqHead needs a keras-hub Seq2SeqLM family (BART, T5) and its "
                "Seq2SeqLMPreprocessor."
            )
        if sequence_length is not None:
            preprocessor.encoder_sequence_length = int(sequence_length)
        _fit_lengths(preprocessor, getattr(model, "max_sequence_length", None))
        self.model = model
        self.preprocessor = preprocessor
        self.sequence_length = int(preprocessor.encoder_sequence_length)
        self.preprocessing = preprocessing
        self.lora_rank = None if lora_rank is None else int(lora_rank)
        if self.lora_rank is not None:
            model.enable_lora(self.lora_rank)
        self._lora_trainable = lora_paths(model)
        self.task = self.task_class(backbone=model, preprocessor=None)
        self._generator = None
        self._sampler_key = None

    def groups(self):
        """`stem` (embeddings), then each encoder layer, then each decoder layer."""
        encoder = list(getattr(self.model, "encoder_transformer_layers", None) or [])
        decoder = list(getattr(self.model, "decoder_transformer_layers", None) or [])
        blocks = encoder + decoder
        ids = {id(layer) for layer in blocks}
        stem = [
            layer for layer in self.model.layers
            if id(layer) not in ids and not isinstance(layer, keras.layers.InputLayer)
        ]
        return [("stem", stem)] + [
            (f"{'encoder' if i < len(encoder) else 'decoder'}_layer_"
             f"{i if i < len(encoder) else i - len(encoder)}", [layer])
            for i, layer in enumerate(blocks)
        ]

    def apply_unfreeze(self, unfreeze):
        """As for text encoders (LoRA: only LoRA weights train); a dict opens encoder and decoder apart.

        `unfreeze={"encoder": 1, "decoder": 2}` trains the last encoder layer
        and the last two decoder layers; the shared embeddings train only
        with `unfreeze="all"`.
        """
        if self.lora_rank is None and isinstance(unfreeze, dict):
            parts = {part: [g for g in self.groups() if g[0].startswith(part)]
                     for part in UNFREEZE_PARTS}
            return apply_unfreeze_parts(self.model, parts, unfreeze)
        return super().apply_unfreeze(unfreeze)

    def train_in_full_with_lora(self, paths):
        """Lets the weights at `paths` train in full beside the LoRA factors (idempotent).

        For weights that start random, such as a warm start's cross-attention.
        """
        self._lora_trainable = list(dict.fromkeys(self._lora_trainable + list(paths)))

    def data_pipeline(self, head, augmentation=()):
        from finetunekit.families.seq2seq.pipeline import Seq2SeqPipeline

        self.check_augmentation(augmentation)
        self.check_target_length(head)
        return Seq2SeqPipeline(head, self.preprocessor, trains=bool(self.model.trainable_weights))

    def check_target_length(self, head, target_tokens=None):
        """Raises when targets of `target_tokens` (the head's `max_target_length`) outgrow the decoder."""
        target_tokens = target_tokens or head.max_target_length
        needed = head.decoder_length(self.preprocessor, target_tokens)
        longest = getattr(self.model, "max_sequence_length", None)
        if longest is not None and needed > int(longest):
            raise ValueError(
                f"max_target_length={target_tokens} needs {needed} decoder positions (with the "
                f"start and end tokens), but {type(self.model).__name__} has {int(longest)}. "
                f"Use max_target_length={int(longest) - (needed - target_tokens)} or less."
            )

    def serving_signature(self):
        """`{"texts": tf.TensorSpec([None], tf.string)}`: raw source strings."""
        import tensorflow as tf

        return {"texts": tf.TensorSpec([None], tf.string, name="texts")}

    def generator(self):
        """The keras-hub `Seq2SeqLM` that generates with this backbone (weights shared)."""
        if self._generator is None:
            self._generator = self.task_class(backbone=self.model, preprocessor=self.preprocessor)
        return self._generator


def _fit_lengths(preprocessor, limit):
    """Caps packing lengths at the backbone's position table.

    A preset folder saved by keras-hub keeps no sequence lengths, so its
    preprocessor comes back with the 1024-token default even when the
    backbone has fewer positions; generation would then fail inside the graph.
    """
    if not limit:
        return
    for name in ("encoder_sequence_length", "decoder_sequence_length"):
        if getattr(preprocessor, name, None) and getattr(preprocessor, name) > limit:
            setattr(preprocessor, name, int(limit))


def _load_preset(preset, weights, policy, preprocessor):
    import keras_hub

    model = keras_hub.models.Backbone.from_preset(
        preset, load_weights=weights is not None, dtype=policy
    )
    if preprocessor is None:
        preprocessor = keras_hub.models.Seq2SeqLMPreprocessor.from_preset(preset)
    return model, preprocessor
