"""Text backbones: keras-hub presets, Hugging Face folders and `keras_hub` Backbone instances."""

import difflib
import os

import keras

from finetunekit.core.freezing import enable_lora, lora_paths
from finetunekit.core.kind import TokenKind, check_layer_decay, check_needs
from finetunekit.core.presets import (
    PRESET_SCHEMES,
    check_token_options,
    is_keras_hub_backbone,
    load_text_encoder,
)

TEXT_INPUTS = ("token_ids", "padding_mask", "segment_ids")
UNUSED_LAYERS = ("pooled_dense",)  # BERT's pooler: the heads pool sequence_output themselves


def is_text_encoder(value):
    """True for a keras-hub Backbone taking `token_ids` and `padding_mask` (a text encoder)."""
    if not is_keras_hub_backbone(value):
        return False
    names = list(value.input) if isinstance(value.input, dict) else []
    return {"token_ids", "padding_mask"} <= set(names)


def text_preset_names():
    """keras-hub preset names that come with a tokenizer (text models)."""
    import keras_hub

    return sorted(keras_hub.models.Tokenizer.presets)


def close_preset_names(name, n=3):
    """keras-hub text preset names close to `name` (for "did you mean" hints)."""
    return difflib.get_close_matches(str(name), text_preset_names(), n=n, cutoff=0.7)


def is_text_preset(value):
    """True if `value` names a keras-hub text preset, an `hf://`/`kaggle://` handle or a preset folder.

    Args:
        value: str or os.PathLike.

    Returns:
        bool. `False` for `.keras`/`.h5` files and unknown names.
    """
    if not isinstance(value, (str, os.PathLike)):
        return False
    value = os.fspath(value)
    if value.startswith(PRESET_SCHEMES):
        return True
    if os.path.isdir(value):
        return any(
            os.path.exists(os.path.join(value, name))
            for name in ("config.json", "metadata.json")
        )
    if value.endswith((".keras", ".h5")) or os.sep in value:
        return False
    return value in text_preset_names()


class TextEncoderBackbone(TokenKind):
    """A keras-hub transformer encoder (BERT family) and its tokenizer.

    The FineTuner graph takes token inputs (`token_ids`, `padding_mask` and,
    for BERT-style models, `segment_ids`); the preprocessor (tokenizer) is kept
    in `self.preprocessor` and applied in the data pipeline, so that
    `FineTuner.predict(["raw text"])` takes raw strings, before and after saving.

    Args:
        backbone: str or `keras_hub.models.Backbone`. A keras-hub preset name
            (`"bert_base_en_uncased"`), an `"hf://org/model"` handle, a local
            preset or Hugging Face folder, or a Backbone instance (then pass
            `preprocessor=`).
        weights: `"imagenet"`/`"pretrained"` (the preset's weights) or `None`
            (random initialisation). Ignored for a Backbone instance.
        preprocessing: str. `"auto"`/`"none"` (no text cleaning) or `"clean"`
            (strip HTML tags, normalise unicode (NFKC) and whitespace) before
            tokenising.
        policy: str. Dtype policy name.
        sequence_length: int or None. Longest token sequence; longer texts are
            truncated. Batches are padded to their own longest sequence up to
            this length. Defaults to the preprocessor's own length.
        preprocessor: a `keras_hub.models.TextClassifierPreprocessor` (or any
            keras-hub preprocessor with a `tokenizer` mapping strings to
            `token_ids`/`padding_mask`). Defaults to the preset's own.
        lora_rank: int or None. Enables LoRA of this rank on the encoder's
            attention (keras-hub `enable_lora`); everything else in the backbone
            stays frozen.
        layer_decay: float in (0, 1] or None. Layer-wise learning-rate decay.
    """

    name = "text_encoder"
    modality = "text"
    description = 'a keras-hub text preset, an "hf://" handle, a preset folder or a keras_hub Backbone'
    priority = 60
    provides = ("features", "padding_mask")

    @classmethod
    def unknown_name_hint(cls, name):
        """Close keras-hub text preset names, for a name no kind accepts."""
        presets = close_preset_names(name)
        return f" Close keras-hub presets: {', '.join(presets)}." if presets else None
    default_learning_rates = (1e-3, 5e-5)

    @classmethod
    def matches(cls, backbone):
        return is_text_encoder(backbone) or is_text_preset(backbone)

    def __init__(
        self, backbone, weights="imagenet", input_shape=None, preprocessing="auto",
        policy="float32", architecture=None, sequence_length=None, preprocessor=None,
        lora_rank=None, layer_decay=None,
    ):
        del architecture  # an image-table option, kept in the common signature
        check_token_options(input_shape, preprocessing, sequence_length, lora_rank, weights)
        self.layer_decay = check_layer_decay(layer_decay)
        model, preprocessor = load_text_encoder(backbone, weights, policy, preprocessor, sequence_length)
        self._check_inputs(model)
        if getattr(preprocessor, "tokenizer", None) is None:
            raise ValueError(
                "`preprocessor` must be a keras-hub preprocessor with a tokenizer, e.g. "
                f"keras_hub.models.TextClassifierPreprocessor. Received: {preprocessor!r}"
            )
        if sequence_length is None:
            sequence_length = getattr(preprocessor, "sequence_length", None) or 512
        sequence_length = int(sequence_length)
        longest = getattr(model, "max_sequence_length", None)
        if longest is not None and sequence_length > int(longest):
            raise ValueError(
                f"`sequence_length={sequence_length}` is longer than the encoder's "
                f"{int(longest)} positions. Pass sequence_length={int(longest)} or less."
            )
        if getattr(preprocessor, "sequence_length", None) != sequence_length:
            preprocessor.sequence_length = sequence_length
        self.model = model
        self.preprocessor = preprocessor
        self.sequence_length = sequence_length
        self.preprocessing = preprocessing
        self.lora_rank = None if lora_rank is None else int(lora_rank)
        self.text_augmentation = None  # set by build(augmentation=...)
        if self.lora_rank is not None:
            enable_lora(model, self.lora_rank)
        self._lora_trainable = lora_paths(model)

    @staticmethod
    def _check_inputs(model):
        names = list(model.input) if isinstance(model.input, dict) else []
        missing = {"token_ids", "padding_mask"} - set(names)
        if missing:
            raise ValueError(
                f"The backbone {model.name!r} takes inputs {names or model.input!r}; a text "
                "backbone must take a dict with 'token_ids' and 'padding_mask'."
            )

    @property
    def input_names(self):
        """The backbone's token inputs, in a fixed order."""
        names = list(self.model.input)
        return [name for name in TEXT_INPUTS if name in names]

    def groups(self):
        """Ordered `(block_name, layers)`: the embeddings as `"stem"`, then one block per transformer layer.

        Layers after the last transformer layer (pooler, final norm) join the
        last block.
        """
        transformer = list(getattr(self.model, "transformer_layers", None) or [])
        if not transformer:
            transformer = [
                layer for layer in self.model.layers if "transformer_layer" in layer.name
            ]
        ids = {id(layer) for layer in transformer}
        stem, tail = [], []
        seen_first = False
        for layer in self.model.layers:
            if isinstance(layer, keras.layers.InputLayer):
                continue
            if id(layer) in ids:
                seen_first = True
                continue
            (tail if seen_first else stem).append(layer)
        groups = [("stem", stem)]
        for i, layer in enumerate(transformer):
            extra = tail if i == len(transformer) - 1 else []
            groups.append((f"transformer_layer_{i}", [layer] + extra))
        return groups

    def apply_unfreeze(self, unfreeze):
        """As `TokenKind.apply_unfreeze`; layers off the `sequence_output` path stay frozen."""
        blocks = super().apply_unfreeze(unfreeze)
        if self.lora_rank is None:
            for layer in self.model.layers:
                if layer.name in UNUSED_LAYERS:
                    layer.trainable = False
        return blocks

    def data_pipeline(self, head, augmentation=()):
        """The pipeline that tokenises user text for `head`."""
        from finetunekit.families.text.pipeline import TextPipeline

        return TextPipeline(
            head,
            self.preprocessor,
            input_names=self.input_names,
            input_dtypes={name: self.model.input[name].dtype for name in self.input_names},
            clean=self.preprocessing == "clean",
            augmentation=self.text_augmentation,
        )

    def cache_blocker(self):
        if self.lora_rank:
            return "LoRA adapters in the encoder train"
        return None

    def build(self, needs=("features", "padding_mask"), augmentation=()):
        """Token inputs -> `{"features": sequence output, "padding_mask": mask}`."""
        check_needs(self, needs)
        self.text_augmentation = text_augmentation(augmentation)
        inputs = {
            name: keras.Input(shape=(None,), dtype=self.model.input[name].dtype, name=name)
            for name in self.input_names
        }
        outputs = self.model(inputs)
        if isinstance(outputs, dict):
            features = outputs.get("sequence_output")
            if features is None:
                raise ValueError(
                    f"The backbone {self.model.name!r} returns {sorted(outputs)}; a text "
                    "backbone must return a 'sequence_output'."
                )
        else:
            features = outputs
        return inputs, {"features": features, "padding_mask": inputs["padding_mask"]}


def text_augmentation(augmentation):
    """The one `TextAugmentation` of `FineTuner(augment=...)` for a text backbone, or None."""
    if not augmentation:
        return None
    if len(augmentation) != 1 or getattr(augmentation[0], "modality", None) != "text":
        names = ", ".join(type(layer).__name__ for layer in augmentation)
        raise ValueError(
            f"Image augmentation ({names}) applies to image backbones only. A text backbone "
            'takes augment={"random_deletion": 0.1, "random_swap": 0.1, "token_mask": 0.15}.'
        )
    return augmentation[0]
