"""Text backbones: keras-hub presets, Hugging Face folders and `keras_hub` Backbone instances."""

import os

import keras

TEXT_INPUTS = ("token_ids", "padding_mask", "segment_ids")
UNUSED_LAYERS = ("pooled_dense",)  # BERT's pooler: the heads pool sequence_output themselves


def is_keras_hub_backbone(value):
    """True for a `keras_hub.models.Backbone` instance."""
    try:
        import keras_hub
    except ImportError:  # pragma: no cover
        return False
    return isinstance(value, keras_hub.models.Backbone)


def is_text_preset(value):
    """True if `value` names a keras-hub preset, an `hf://`/`kaggle://` handle or a preset folder.

    Args:
        value: str or os.PathLike.

    Returns:
        bool. `False` for `.keras`/`.h5` files and unknown names.
    """
    if not isinstance(value, (str, os.PathLike)):
        return False
    value = os.fspath(value)
    if value.startswith(("hf://", "kaggle://", "gs://", "modelscope://")):
        return True
    if os.path.isdir(value):
        return any(
            os.path.exists(os.path.join(value, name))
            for name in ("config.json", "metadata.json")
        )
    if value.endswith((".keras", ".h5")) or os.sep in value:
        return False
    import keras_hub

    return value in keras_hub.models.Backbone.presets


class TextBackbone:
    """Resolves `FineTuner(backbone=...)` for transformer encoders and builds the token graph.

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
        layer_decay: float in (0, 1] or None. Layer-wise learning-rate decay,
            read by `FineTuner.compile`.
        input_shape, architecture: unused for text (kept for the common
            adapter interface).
    """

    kind = "text"

    def __init__(
        self,
        backbone,
        weights="imagenet",
        input_shape=None,
        preprocessing="auto",
        policy="float32",
        architecture=None,
        sequence_length=None,
        preprocessor=None,
        lora_rank=None,
        layer_decay=None,
    ):
        import keras_hub

        if input_shape is not None:
            raise ValueError(
                "`input_shape` applies to image backbones; a text backbone takes "
                f"sequence_length=... instead. Received: input_shape={input_shape!r}"
            )
        if preprocessing not in ("auto", "none", "clean"):
            raise ValueError(
                'For a text backbone `preprocessing` must be "auto", "none" or "clean" '
                f"(HTML, unicode and whitespace cleaning). Received: preprocessing={preprocessing!r}"
            )
        if sequence_length is not None and (
            isinstance(sequence_length, bool) or int(sequence_length) < 2
        ):
            raise ValueError(
                f"`sequence_length` must be an int >= 2. Received: sequence_length={sequence_length!r}"
            )
        if lora_rank is not None and (isinstance(lora_rank, bool) or int(lora_rank) < 1):
            raise ValueError(f"`lora_rank` must be a positive int. Received: lora_rank={lora_rank!r}")
        if layer_decay is not None and not 0.0 < float(layer_decay) <= 1.0:
            raise ValueError(
                f"`layer_decay` must be in (0, 1]. Received: layer_decay={layer_decay!r}"
            )
        if weights not in (None, "imagenet", "pretrained"):
            raise ValueError(
                'For a text backbone `weights` must be "pretrained" (the preset\'s weights) or '
                f"None (random). Received: weights={weights!r}"
            )
        if is_keras_hub_backbone(backbone):
            model = backbone
            if preprocessor is None:
                raise ValueError(
                    f"A keras_hub Backbone instance ({type(backbone).__name__}) needs its "
                    "tokenizer: pass preprocessor=keras_hub.models.TextClassifierPreprocessor"
                    "(...) (or *.from_preset(...)) to FineTuner."
                )
        elif isinstance(backbone, (str, os.PathLike)):
            preset = os.fspath(backbone)
            model = keras_hub.models.Backbone.from_preset(
                preset, load_weights=weights is not None, dtype=policy
            )
            if preprocessor is None:
                options = {} if sequence_length is None else {"sequence_length": int(sequence_length)}
                preprocessor = keras_hub.models.TextClassifierPreprocessor.from_preset(
                    preset, **options
                )
        else:
            raise ValueError(
                "`backbone` must be a keras-hub preset name, an 'hf://' handle, a preset "
                f"folder or a keras_hub Backbone. Received: {backbone!r}"
            )
        self._check_inputs(model)
        if getattr(preprocessor, "tokenizer", None) is None:
            raise ValueError(
                "`preprocessor` must be a keras-hub preprocessor with a tokenizer, e.g. "
                f"keras_hub.models.TextClassifierPreprocessor. Received: {preprocessor!r}"
            )
        if sequence_length is None:
            sequence_length = getattr(preprocessor, "sequence_length", None) or 512
        sequence_length = int(sequence_length)
        if getattr(preprocessor, "sequence_length", None) != sequence_length:
            preprocessor.sequence_length = sequence_length
        self.model = model
        self.preprocessor = preprocessor
        self.sequence_length = sequence_length
        self.preprocessing = preprocessing
        self.lora_rank = None if lora_rank is None else int(lora_rank)
        self.layer_decay = None if layer_decay is None else float(layer_decay)
        self.input_shape = None
        self.architecture = None
        if self.lora_rank is not None:
            model.enable_lora(self.lora_rank)
        self._lora_trainable = [
            variable.path for variable in model.trainable_variables if "lora" in variable.path
        ]

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
        """Applies `unfreeze` (and keeps LoRA weights the only trainable backbone weights).

        Returns:
            The list of unfrozen block names (`["lora"]` with LoRA).
        """
        from finetunekit.freezing import apply_unfreeze

        if self.lora_rank is None:
            blocks = apply_unfreeze(self.model, self.groups(), unfreeze)
            for layer in self.model.layers:
                if layer.name in UNUSED_LAYERS:  # not on the sequence_output path
                    layer.trainable = False
            return blocks
        if unfreeze != 0:
            raise ValueError(
                "With lora_rank the backbone trains only its LoRA weights; use unfreeze=0. "
                f"Received: unfreeze={unfreeze!r}"
            )
        self.model.trainable = True
        keep = set(self._lora_trainable)
        for layer in self.model._flatten_layers(include_self=False):
            for variable in layer._trainable_variables + layer._non_trainable_variables:
                variable.trainable = variable.path in keep
        return ["lora"]

    def layer_depths(self):
        """`{variable.path: depth}`: 0 for embeddings, i + 1 for transformer layer i.

        Returns:
            `(depths, num_layers)`; head variables are not listed (depth
            `num_layers + 1`).
        """
        depths = {}
        groups = self.groups()
        for depth, (_, layers) in enumerate(groups):
            for layer in layers:
                for variable in layer.weights:
                    depths[variable.path] = depth
        return depths, len(groups) - 1

    def learning_rate_multipliers(self):
        """`{variable.path: layer_decay ** (num_layers + 1 - depth)}` for the backbone, or `{}`."""
        if self.layer_decay is None:
            return {}
        depths, num_layers = self.layer_depths()
        return {
            path: self.layer_decay ** (num_layers + 1 - depth) for path, depth in depths.items()
        }

    def data_adapter(self, head):
        """The data adapter that tokenises user text for `head`."""
        from finetunekit.data.text import TextDataAdapter

        return TextDataAdapter(
            head,
            self.preprocessor,
            input_names=self.input_names,
            input_dtypes={name: self.model.input[name].dtype for name in self.input_names},
            clean=self.preprocessing == "clean",
        )

    def extra_config(self):
        """Constructor arguments of FineTuner specific to text backbones."""
        return {
            "sequence_length": self.sequence_length,
            "preprocessor": keras.saving.serialize_keras_object(self.preprocessor),
            "lora_rank": self.lora_rank,
            "layer_decay": self.layer_decay,
        }

    def build_graph(self, augmentation_layers):
        """Builds the input graph: token inputs -> sequence features.

        Returns:
            `(inputs, features, padding_mask)`: a dict of `keras.Input`, the
            `(batch, seq, hidden)` sequence output and the padding mask.
        """
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
        return inputs, features, inputs["padding_mask"]
