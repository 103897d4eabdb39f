"""Decoder-only language models: a GGUF file, a keras-hub `CausalLM` or its backbone.

The FineTuner graph takes `token_ids` and `padding_mask` and gives the head
the next-token logits (`"lm_logits"`) of keras-hub's own `CausalLM` task on
the backbone, so tied output embeddings are kept. With a packing head
(`InstructionHead(packing=True)`, Llama backbones) it takes `token_ids`,
`segment_ids` and `position_ids` instead and runs the backbone's own layers
with a block-diagonal causal mask (`packing.PackedLogits`). Generation uses a second
`CausalLM` on the same backbone (weights shared) with keras-hub's samplers.
LoRA goes through keras-hub's `backbone.enable_lora(rank)`; `quantize="int8"`
runs Keras' `backbone.quantize("int8")` first, so the frozen base weights
stay int8 while the float LoRA factors train.
"""

import json
import os
import sys

import keras

from finetunekit.core._keras_compat import load_preset_tokenizer
from finetunekit.core.freezing import enable_lora, lora_paths
from finetunekit.core.kind import check_layer_decay
from finetunekit.core.presets import (
    check_token_options,
    is_keras_hub_backbone,
    preset_backbone_class,
    read_preset_config,
    with_policy,
)
from finetunekit.families.causal_lm.export import is_quantized, write_keras_hub_preset
from finetunekit.generation.language_model import LanguageModelKind

QUANTIZE_MODES = (None, "int8")
LM_INPUTS = ("token_ids", "padding_mask")


def _stand_in(name, module):
    """A class registered as `finetunekit>{name}` that loads `module` (keras-hub) on `from_config`.

    `fk.load` finds the GGUF classes by name before keras-hub is imported;
    importing `module` registers the real class under the same name.
    """

    def from_config(cls, config):
        import importlib

        return getattr(importlib.import_module(module), name).from_config(config)

    stand_in = type(f"_{name}Loader", (), {
        "__doc__": f"Stand-in for {name} until keras-hub is imported.",
        "get_config": lambda self: {}, "from_config": classmethod(from_config),
    })
    return keras.saving.register_keras_serializable(package="finetunekit", name=name)(stand_in)


if "finetunekit.families.causal_lm.gguf_llama" not in sys.modules:
    _stand_in("GGUFLlamaBackbone", "finetunekit.families.causal_lm.gguf_llama")
if "finetunekit.families.causal_lm.gguf_tokenizer" not in sys.modules:
    _stand_in("GGUFBytePairTokenizer", "finetunekit.families.causal_lm.gguf_tokenizer")


def _task_classes():
    """Every keras-hub `CausalLM` subclass that is not a `Seq2SeqLM` (decoder-only tasks)."""
    import keras_hub

    pending, seen = [keras_hub.models.CausalLM], []
    while pending:
        for sub in pending.pop().__subclasses__():
            if sub not in seen and not issubclass(sub, keras_hub.models.Seq2SeqLM):
                seen.append(sub)
                pending.append(sub)
    return seen


def causal_lm_task_class(backbone_class):
    """The most specific keras-hub `CausalLM` subclass built on `backbone_class`, or None.

    Args:
        backbone_class: a keras-hub `Backbone` subclass.

    Returns:
        The task class (e.g. `Llama3CausalLM` for a `Llama3Backbone`), or None.

    Example:
    ```python
    causal_lm_task_class(keras_hub.models.GPT2Backbone)  # GPT2CausalLM
    ```
    """
    best = None
    for task in _task_classes():
        base = getattr(task, "backbone_cls", None)
        if base is None or not issubclass(backbone_class, base):
            continue
        if best is None or issubclass(base, best.backbone_cls):
            best = task
    return best


def is_causal_lm_task(value):
    """True for a keras-hub decoder-only `CausalLM` task instance."""
    keras_hub = sys.modules.get("keras_hub")
    return (
        keras_hub is not None and isinstance(value, keras_hub.models.CausalLM)
        and not isinstance(value, keras_hub.models.Seq2SeqLM)
    )


def is_causal_lm_backbone(value):
    """True for a keras-hub Backbone with `token_ids`/`padding_mask`, no encoder, and a CausalLM."""
    if not is_keras_hub_backbone(value):
        return False
    names = set(value.input) if isinstance(value.input, dict) else set()
    if not set(LM_INPUTS) <= names or any(name.startswith("encoder") for name in names):
        return False
    return causal_lm_task_class(type(value)) is not None


def is_gguf_path(value):
    """True for the path of a `.gguf` file (existing or not: loading reports a missing one)."""
    return isinstance(value, (str, os.PathLike)) and os.fspath(value).lower().endswith(".gguf")


def is_causal_lm_preset(value):
    """True for a keras-hub decoder-only CausalLM preset name, or a preset folder / handle of one."""
    if not isinstance(value, (str, os.PathLike)):
        return False
    value = os.fspath(value)
    import keras_hub

    if value in keras_hub.models.Seq2SeqLM.presets:
        return False
    if value in keras_hub.models.CausalLM.presets:
        return True
    custom = finetunekit_preset_backbone(value)  # a finetunekit backbone's own preset folder
    if custom is not None:
        return causal_lm_task_class(custom) is not None
    backbone_class = preset_backbone_class(value)
    return backbone_class is not None and causal_lm_task_class(backbone_class) is not None


def finetunekit_preset_backbone(value):
    """The finetunekit backbone class (e.g. `GGUFLlamaBackbone`) a keras-hub preset folder declares.

    `backbone.save_to_preset(folder)` of a finetunekit backbone writes its
    registered name (`"finetunekit>GGUFLlamaBackbone"`) into `config.json`;
    keras-hub's `CausalLM.from_preset` does not find a task for such a
    subclass, so these folders are loaded by `_folder_task`.

    Args:
        value: anything given as `backbone=`.

    Returns:
        The backbone class, or None (not a folder, or not a finetunekit backbone).
    """
    import importlib

    config = read_preset_config(value)
    registered = (config or {}).get("registered_name") or ""
    if not registered.startswith("finetunekit>"):
        return None
    for module in ("gguf_llama", "gguf_tokenizer"):  # replaces the stand-ins by the real classes
        importlib.import_module(f"finetunekit.families.causal_lm.{module}")
    import keras_hub

    found = keras.saving.get_registered_object(registered)
    is_backbone = isinstance(found, type) and issubclass(found, keras_hub.models.Backbone)
    return found if is_backbone else None


def _folder_task(folder, weights, policy, sequence_length):
    """A keras-hub `CausalLM` of a preset folder holding a finetunekit backbone and its tokenizer."""
    import keras_hub

    folder = os.fspath(folder)
    backbone = keras_hub.models.Backbone.from_preset(
        folder, load_weights=weights is not None, dtype=policy
    )
    task_class = causal_lm_task_class(type(backbone))
    if not os.path.exists(os.path.join(folder, "tokenizer.json")):
        raise ValueError(
            f"The preset folder {folder!r} holds a {type(backbone).__name__} but no tokenizer "
            "(tokenizer.json). Save it beside the backbone: "
            "tokenizer.save_to_preset(folder)."
        )
    tokenizer = load_preset_tokenizer(folder, task_class.preprocessor_cls.tokenizer_cls)
    preprocessor = task_class.preprocessor_cls(
        tokenizer=tokenizer, sequence_length=int(sequence_length or 1024),
        add_start_token=getattr(tokenizer, "start_token_id", None) is not None,
    )
    return task_class(backbone=backbone, preprocessor=preprocessor)


def folder_chat_template(preset):
    """The `chat_template` of a Hugging Face folder's `tokenizer_config.json`, or None."""
    if not isinstance(preset, (str, os.PathLike)) or not os.path.isdir(preset):
        return None
    for name in ("tokenizer_config.json", "chat_template.json"):
        path = os.path.join(os.fspath(preset), name)
        try:
            with open(path, encoding="utf-8") as f:
                template = json.load(f).get("chat_template")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(template, str) and template:
            return template
    return None


def _load(backbone, weights, policy, preprocessor, sequence_length):
    """`(model, preprocessor, task_class, metadata)` of any accepted `backbone=` value."""
    import keras_hub

    metadata = {}
    if is_gguf_path(backbone):
        from finetunekit.families.causal_lm.gguf import load_gguf

        task, metadata = load_gguf(
            backbone, dtype=None if policy == "float32" else policy,
            sequence_length=int(sequence_length or 1024),
        )
    elif is_causal_lm_task(backbone):
        task = backbone
    elif is_causal_lm_backbone(backbone):
        if preprocessor is None:
            raise ValueError(
                f"A keras_hub Backbone instance ({type(backbone).__name__}) needs its tokenizer: "
                "pass preprocessor=keras_hub.models.CausalLMPreprocessor(tokenizer) (or "
                "*.from_preset(...)) to FineTuner."
            )
        model = with_policy(backbone, policy)
        return model, preprocessor, causal_lm_task_class(type(model)), metadata
    elif finetunekit_preset_backbone(backbone) is not None:
        task = _folder_task(backbone, weights, policy, sequence_length)
        metadata = {"chat_template": folder_chat_template(backbone)}
    else:
        task = keras_hub.models.CausalLM.from_preset(
            os.fspath(backbone), load_weights=weights is not None, dtype=policy
        )
        metadata = {"chat_template": folder_chat_template(backbone)}
    preprocessor = preprocessor if preprocessor is not None else task.preprocessor
    if preprocessor is None:
        raise ValueError(
            f"The {type(task).__name__} has no preprocessor (tokenizer); pass preprocessor=... "
            "to FineTuner."
        )
    return with_policy(task.backbone, policy), preprocessor, type(task), metadata


def check_quantize(quantize, lora_rank):
    """Validates `quantize` (None or "int8"); int8 needs LoRA (int8 weights do not train)."""
    if quantize not in QUANTIZE_MODES:
        raise ValueError(
            f'`quantize` must be None or "int8" (Keras int8 weights). Received: quantize={quantize!r}'
        )
    if quantize and lora_rank is None:
        raise ValueError(
            'quantize="int8" keeps the base weights frozen in int8, which cannot train; add '
            "lora_rank=8 (LoRA factors train in float beside them)."
        )
    return quantize


class CausalLMBackbone(LanguageModelKind):
    """A decoder-only language model (Llama, SmolLM2, GPT-2, Gemma, ...) and its tokenizer.

    Args:
        backbone: the path of a llama.cpp `.gguf` file (Llama architecture), a
            keras-hub `CausalLM` preset name (`"gpt2_base_en"`), an `"hf://"`
            handle or local folder of one, a `keras_hub.models.CausalLM` task,
            or a decoder-only keras-hub Backbone (then pass `preprocessor=`).
        weights: `"pretrained"`/`"imagenet"` (the preset's weights) or `None`
            (random; presets only).
        preprocessing: `"auto"` or `"none"`.
        policy: str. Dtype policy name.
        sequence_length: int or None. Longest training example in tokens
            (longer ones are truncated by the head's `on_too_long`). Defaults
            to the preprocessor's `sequence_length`.
        preprocessor: a keras-hub `CausalLMPreprocessor`. Defaults to the
            checkpoint's own.
        lora_rank: int or None. LoRA of this rank on the attention (keras-hub
            `enable_lora`); only the LoRA factors train.
        quantize: None or `"int8"`: the frozen base weights are quantized to
            int8 (Keras `quantize`) before LoRA is enabled. Needs `lora_rank`.
        layer_decay: float in (0, 1] or None.

    Example:
    ```python
    lm = fk.FineTuner(backbone="smollm2.gguf", head=fk.InstructionHead(), lora_rank=8,
                      quantize="int8")
    ```
    """

    name = "causal_lm"
    modality = "text"
    description = (
        'a ".gguf" file, a keras-hub CausalLM preset (GPT-2, Llama, Gemma), its "hf://" handle '
        "or folder, a keras_hub CausalLM, or its Backbone"
    )
    priority = 35  # after seq2seq (keras-hub's Seq2SeqLM is a CausalLM), before text encoders
    default_learning_rates = (2e-4, 2e-5)
    input_names = LM_INPUTS
    packing = False
    head_name = "a fk.InstructionHead"
    noun = "a causal language model"

    @classmethod
    def matches(cls, backbone):
        return (
            is_gguf_path(backbone) or is_causal_lm_task(backbone)
            or is_causal_lm_backbone(backbone) or is_causal_lm_preset(backbone)
        )

    def __init__(
        self, backbone, weights="imagenet", input_shape=None, preprocessing="auto",
        policy="float32", architecture=None, sequence_length=None, preprocessor=None,
        lora_rank=None, layer_decay=None, quantize=None,
    ):
        del architecture
        check_token_options(input_shape, preprocessing, sequence_length, lora_rank, weights)
        if preprocessing == "clean":
            raise ValueError('preprocessing="clean" applies to text classification backbones only.')
        self.layer_decay = check_layer_decay(layer_decay)
        self.quantize = check_quantize(quantize, lora_rank)
        model, preprocessor, task_class, metadata = _load(
            backbone, weights, policy, preprocessor, sequence_length
        )
        self.metadata = metadata
        self.task_class = task_class
        self.preprocessor = preprocessor
        self.sequence_length = self._sequence_length(model, preprocessor, sequence_length)
        self.preprocessing = preprocessing
        self.lora_rank = None if lora_rank is None else int(lora_rank)
        if self.quantize and not is_quantized(model):
            model.quantize(self.quantize)
        if self.lora_rank is not None:
            enable_lora(model, self.lora_rank)
        self._lora_trainable = lora_paths(model)
        self.model = model
        self.task = task_class(backbone=model, preprocessor=None)
        self._generator = None
        self._sampler_key = None

    @staticmethod
    def _sequence_length(model, preprocessor, sequence_length):
        length = int(sequence_length or getattr(preprocessor, "sequence_length", None) or 1024)
        longest = getattr(model, "max_sequence_length", None)
        if longest is not None and length > int(longest):
            if sequence_length is not None:
                raise ValueError(
                    f"`sequence_length={length}` is longer than the model's {int(longest)} "
                    f"positions. Pass sequence_length={int(longest)} or less."
                )
            length = int(longest)
        return length

    @property
    def tokenizer(self):
        """The keras-hub tokenizer (the preprocessor's)."""
        return self.preprocessor.tokenizer

    def default_chat_template(self):
        """The checkpoint's own chat template source (GGUF metadata, HF folder), or None."""
        return self.metadata.get("chat_template")

    def groups(self):
        """`stem` (embeddings), then one block per transformer layer (the final norm joins the last)."""
        blocks = list(getattr(self.model, "transformer_layers", None) or [])
        ids = {id(layer) for layer in blocks}
        stem, tail, seen = [], [], False
        for layer in self.model.layers:
            if isinstance(layer, keras.layers.InputLayer):
                continue
            if id(layer) in ids:
                seen = True
            else:
                (tail if seen else stem).append(layer)
        return [("stem", stem)] + [
            (f"transformer_layer_{i}", [layer] + (tail if i == len(blocks) - 1 else []))
            for i, layer in enumerate(blocks)
        ]

    def input_dtype(self, name):
        if self.packing:
            return "int32"
        return self.model.input[name].dtype

    def enable_packing(self):
        """Makes the FineTuner graph take packed rows (`PACKED_INPUTS`); before `build`.

        Raises:
            ValueError: the backbone cannot take a block-diagonal mask
                (`packing_blocker` names it and the fix).
        """
        from finetunekit.families.causal_lm.packing import PACKED_INPUTS, packing_blocker

        reason = packing_blocker(self.model)
        if reason is not None:
            raise ValueError(reason)
        self.packing = True
        self.input_names = PACKED_INPUTS

    def graph(self):
        """The task graph; with packing, `PackedLogits` on `token_ids`/`segment_ids`/`position_ids`."""
        if not self.packing:
            return super().graph()
        from keras import ops

        from finetunekit.families.causal_lm.packing import PackedLogits

        inputs = {
            name: keras.Input(shape=(None,), dtype="int32", name=name) for name in self.input_names
        }
        logits = PackedLogits(self.model, name="packed_logits")(inputs)
        return inputs, {"lm_logits": logits, "padding_mask": ops.greater(inputs["segment_ids"], 0)}

    def data_pipeline(self, head, augmentation=()):
        from finetunekit.families.causal_lm.pipeline import CausalLMPipeline

        self.check_augmentation(augmentation)
        return CausalLMPipeline(head, self, trains=bool(self.model.trainable_weights))

    def config(self):
        return {**super().config(), "quantize": self.quantize}

    def generator(self):
        """The keras-hub `CausalLM` that generates with this backbone (weights shared)."""
        if self._generator is None:
            self._generator = self.task_class(backbone=self.model, preprocessor=None)
        return self._generator

    def serving_signature(self):
        """`{"prompts": tf.TensorSpec([None], tf.string)}`: user prompts (see `causal_lm.serving`)."""
        import tensorflow as tf

        return {"prompts": tf.TensorSpec([None], tf.string, name="prompts")}

    extra_export_formats = ("keras_hub",)

    def export_format(self, ft, directory, format):
        """Writes `format="keras_hub"`: a keras-hub preset folder, LoRA merged (see `export`)."""
        return write_keras_hub_preset(self, directory)
