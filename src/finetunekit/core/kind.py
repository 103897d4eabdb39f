"""The backbone protocol and its registry.

A *backbone kind* wraps one family of pretrained models (the
`keras.applications` table, a user's Keras image model, a keras-hub text
encoder, ...) behind one small interface, so that `FineTuner` never asks which
family it holds:

- `matches(backbone)` (class method): does this kind handle the user's
  `backbone=` value? `resolve_backbone` asks every registered kind in order.
- `build(needs, augmentation)`: named Keras inputs and a dict of named outputs
  (`"features"`, optionally `"padding_mask"` and a `"pyramid"` dict of
  multi-scale features keyed `"P2"`..`"P5"`; for image kinds `"images"`:
  the preprocessed images at the backbone's input size; `"decoder_logits"`,
  a speech decoder's next-token logits; `"lm_logits"`, next-token logits of an
  encoder-decoder or a decoder-only language model); `needs` are the outputs the head asks for.
- `groups()`: ordered `(block_name, layers)` for freezing and layer-wise
  learning rates; `apply_unfreeze(unfreeze)`.
- `data_pipeline(head, augmentation)`: the reader + preprocessing that turn user data into
  model inputs.
- `config()`: the `FineTuner` arguments that rebuild it; `serving_signature()`.
"""

import importlib

import keras

from finetunekit.core.freezing import apply_unfreeze, train_lora_only

BACKBONE_OUTPUTS = (
    "features", "padding_mask", "pyramid", "images", "decoder_logits", "lm_logits",
)

_REGISTRY = []
_FIRST = set()


class NoBackboneKind(ValueError):
    """No registered backbone kind accepts the `backbone=` value."""


def register_backbone_kind(cls, first=False):
    """Registers a backbone kind (a `BackboneKind` subclass) with `resolve_backbone`.

    Kinds are asked by their declared `priority` (lower first; registration
    order breaks ties); `first=True` asks this kind before every other. The
    first kind whose `matches(backbone)` is true wins. Built-in kinds register
    in their family's `__init__.py`.

    Args:
        cls: a `BackboneKind` subclass.
        first: bool. Ask this kind before the others. Defaults to `False`.

    Returns:
        `cls`, so that it can be used as a class decorator.

    Example:
    ```python
    @fk.backbones.register_backbone_kind
    class MyKind(fk.backbones.BackboneKind):
        name = "mine"
        @classmethod
        def matches(cls, backbone):
            return isinstance(backbone, MyModel)
    ```
    """
    if cls in _REGISTRY:
        _REGISTRY.remove(cls)
    _FIRST.discard(cls)
    if first:
        _FIRST.add(cls)
    _REGISTRY.append(cls)
    return cls


def _asking_order():
    index = {kind: i for i, kind in enumerate(_REGISTRY)}
    return sorted(_REGISTRY, key=lambda k: (k not in _FIRST, k.priority, index[k]))


def load_families():
    """Imports the plugin of every built-in task family, which registers its kinds and heads.

    The families are found by name (a plugin look-up, as entry points do), so
    that the core never imports a family.
    """
    for name in importlib.import_module("finetunekit.families").BUILTIN:
        importlib.import_module(f"finetunekit.families.{name}.plugin")


def backbone_kinds():
    """The registered backbone kinds, in the order `resolve_backbone` asks them."""
    load_families()
    return _asking_order()


def resolve_backbone(backbone, **options):
    """Returns the backbone kind instance that handles `backbone`.

    Args:
        backbone: what the user passed as `FineTuner(backbone=...)`.
        **options: `weights`, `input_shape`, `preprocessing`, `policy`,
            `architecture` and kind-specific options (`sequence_length`,
            `preprocessor`, `lora_rank`, ...).

    Returns:
        A `BackboneKind` instance.

    Raises:
        NoBackboneKind: no registered kind accepts `backbone`.
        ValueError: an unknown name, with the close names each kind suggests.
    """
    kinds = backbone_kinds()
    for kind in kinds:
        if kind.matches(backbone):
            return kind(backbone, **options)
    if isinstance(backbone, str):
        hints = [kind.unknown_name_hint(backbone) for kind in kinds]
        hints = [hint for hint in hints if hint]
        if hints:
            raise ValueError("".join(hints))
    names = ", ".join(kind.description for kind in kinds)
    raise NoBackboneKind(
        f"`backbone` must be one of: {names}. Received: {backbone!r} of type "
        f"{type(backbone).__name__}"
    )


class BackboneKind:
    """Base class of backbone kinds (see the module docstring for the protocol).

    Attributes:
        name: str. Short name of the kind (`"applications"`, `"text_encoder"`).
        modality: str. What raw inputs look like (`"image"`, `"text"`).
        description: str. What `backbone=` values the kind accepts (for errors).
        model: the Keras backbone model.
        preprocessor: the data-side preprocessor (a tokenizer), or None.
        input_shape, preprocessing, architecture: values kept in the config.
    """

    name = "base"
    modality = None
    description = "a backbone"
    #: int. Kinds with a lower priority are asked first by `resolve_backbone`
    #: (a kind that accepts any `keras.Model` asks last).
    priority = 50
    #: tuple of str. The outputs `build` can give a head (`BACKBONE_OUTPUTS`
    #: and kind-specific ones such as `"query"`); `check_needs` reads it.
    provides = ("features",)
    preprocessor = None
    input_shape = None
    preprocessing = "none"
    architecture = None
    layer_decay = None
    #: Learning rates of `compile(optimizer="auto")`: `(frozen, unfrozen)`.
    default_learning_rates = (1e-3, 1e-4)
    #: bool. True when the backbone's BatchNormalization layers never saw data (random
    #: weights): in the blocks that train they run in training mode, and their statistics
    #: are recomputed with the final weights after each training stage.
    learns_norm_stats = False

    @classmethod
    def matches(cls, backbone):  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def unknown_name_hint(cls, name):
        """A hint for a `backbone=` name that no kind accepts, or None.

        Args:
            name: str. The unknown name.

        Returns:
            A string added to the error (close names this kind knows), or None.
        """
        return None

    def build(self, needs, augmentation=()):  # pragma: no cover - abstract
        """Returns `(inputs, outputs)`: Keras inputs and a dict of named outputs."""
        raise NotImplementedError

    def groups(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def data_pipeline(self, head, augmentation=()):  # pragma: no cover - abstract
        """The pipeline for `head`; `augmentation` layers run in it when the head
        augments its targets with the inputs (`head.augment_in_model` False)."""
        raise NotImplementedError

    def apply_unfreeze(self, unfreeze):
        """Freezes the backbone, then opens its last `unfreeze` blocks; returns their names."""
        return apply_unfreeze(self.model, self.groups(), unfreeze)

    def config(self):
        """`FineTuner` arguments specific to this kind (merged into its config)."""
        return {} if self.layer_decay is None else {"layer_decay": self.layer_decay}

    def default_learning_rate(self, unfreeze):
        """The `"auto"` learning rate for a backbone trained with `unfreeze`."""
        frozen, unfrozen = self.default_learning_rates
        return frozen if unfreeze == 0 else unfrozen

    def serving_signature(self):
        """`{input_name: tf.TensorSpec}` of raw serving inputs, or raise `ValueError`."""
        raise ValueError(
            f"A {self.modality} backbone cannot be exported as a SavedModel yet; save it "
            'with ft.save("model.keras") instead.'
        )

    def cache_blocker(self):
        """Why backbone features cannot be cached for this kind, or None."""
        return None

    def boundary_split(self):
        """`(front, back)` models cut at the freezing boundary, or why not (a str).

        Boundary caching (`fit` with `unfreeze=N`) stores the front's output
        once and trains the back and the head on it; `backbone_input` is the
        model's tensor that the front is called on.
        """
        return f"{type(self).__name__} backbones are not cut at the freezing boundary"

    def learning_rate_multipliers(self):
        """`{variable.path: multiplier}` of layer-wise learning-rate decay, or `{}`.

        One convention for every kind, timm's: with `L` groups (the stem
        first), group `i` gets `layer_decay ** (L - i)`, so the top block
        trains at `layer_decay` times the base rate, each block below at
        `layer_decay` times the one above, and the head (not listed) at the
        base rate.
        """
        if self.layer_decay is None:
            return {}
        groups = self.groups()
        multipliers = {}
        for index, (_, layers) in enumerate(groups):
            scale = self.layer_decay ** (len(groups) - index)
            for layer in layers:
                for variable in layer.weights:
                    multipliers.setdefault(variable.path, scale)
        return multipliers


class TokenKind(BackboneKind):
    """Base class of kinds whose inputs are token ids made by a keras-hub preprocessor.

    Text encoders, sequence-to-sequence and causal language models share the
    options kept in the `FineTuner` config and the LoRA rule of `unfreeze`.

    Attributes:
        sequence_length: int. Longest input, in tokens.
        lora_rank: int or None. Rank of the LoRA factors, when enabled.
    """

    modality = "text"
    sequence_length = None
    lora_rank = None
    #: list of str. Paths of the LoRA weights that train (set by the subclass).
    _lora_trainable = ()

    def apply_unfreeze(self, unfreeze):
        """With LoRA only the LoRA factors train (`unfreeze` must be 0); else as `BackboneKind`.

        Returns:
            The list of unfrozen block names (`["lora"]` with LoRA).
        """
        if self.lora_rank is not None:
            return train_lora_only(self.model, self._lora_trainable, unfreeze)
        return super().apply_unfreeze(unfreeze)

    def config(self):
        """Constructor arguments of `FineTuner` specific to token backbones."""
        return {
            "sequence_length": self.sequence_length,
            "preprocessor": keras.saving.serialize_keras_object(self.preprocessor),
            "lora_rank": self.lora_rank,
            "layer_decay": self.layer_decay,
        }


def check_layer_decay(layer_decay):
    """Validates `layer_decay` (None or a float in (0, 1]); returns it as a float or None."""
    if layer_decay is None:
        return None
    if isinstance(layer_decay, bool) or not 0.0 < float(layer_decay) <= 1.0:
        raise ValueError(f"`layer_decay` must be in (0, 1]. Received: layer_decay={layer_decay!r}")
    return float(layer_decay)


#: Outputs a head may ask for that only some kinds give (sequences have a padding mask).
OPTIONAL_OUTPUTS = ("padding_mask",)
#: What to do when a head asks for an output a kind does not provide: one hint per output.
MISSING_OUTPUT_HINTS = {
    "query": "Use fk.backbones.Embeddings(users=..., items=...).",
    "candidates": "Use fk.backbones.Embeddings(users=..., items=...).",
    "lm_logits": 'Use a language model: a keras-hub Seq2SeqLM (e.g. backbone="bart_base_en") or, '
                 "for fk.InstructionHead, a decoder-only CausalLM preset or a .gguf file; on a "
                 'BERT-family encoder fk.Seq2SeqHead(decoder="warm_start").',
    "pyramid": "Use a convolutional image backbone.",
    "images": "Use an image backbone.",
    "decoder_logits": 'Use a Whisper or Moonshine backbone (e.g. backbone="whisper_tiny_en").',
    "features": "Use a head that reads this backbone's outputs.",
}
OUTPUT_NAMES = {
    "query": "user and item towers", "candidates": "user and item towers",
    "lm_logits": "a language model's next-token logits",
    "pyramid": "multi-scale (pyramid) features", "images": "the input images",
    "decoder_logits": "a speech decoder",
    "features": "features",
}


def check_needs(kind, needs):
    """Raises when a head asks for outputs a backbone kind does not declare in `provides`.

    Args:
        kind: a `BackboneKind` (instance or class).
        needs: the head's `needs`, a tuple of output names.

    Raises:
        ValueError: naming the missing outputs, the kind and what to use instead.
    """
    unknown = sorted(set(needs) - set(BACKBONE_OUTPUTS) - set(MISSING_OUTPUT_HINTS) - set(OPTIONAL_OUTPUTS))
    if unknown:
        raise ValueError(
            f"Unknown backbone outputs {unknown}; a head may ask for "
            f"{', '.join(BACKBONE_OUTPUTS)}."
        )
    missing = [name for name in needs if name not in kind.provides and name not in OPTIONAL_OUTPUTS]
    if missing:
        missing = sorted(missing)
        wanted = " and ".join(dict.fromkeys(OUTPUT_NAMES[name] for name in missing))
        raise ValueError(
            f"This head needs {wanted} ({', '.join(missing)}), which a {kind.modality} backbone "
            f"({kind.name}) does not provide. {MISSING_OUTPUT_HINTS[missing[0]]}"
        )
