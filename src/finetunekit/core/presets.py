"""keras-hub presets shared by every family that loads one: recognising and loading them.

A preset is a keras-hub name (`"bert_tiny_en_uncased"`), a handle
(`"hf://..."`, `"kaggle://..."`) or a local folder with a `config.json`.
The families decide which presets are theirs (by keras-hub's class name);
the loading steps they share live here.
"""

import functools
import json
import os
import sys

PRESET_SCHEMES = ("hf://", "kaggle://", "gs://", "modelscope://")


def is_keras_hub_backbone(value):
    """True for a `keras_hub.models.Backbone` instance (without importing keras-hub for others)."""
    keras_hub = sys.modules.get("keras_hub")
    return keras_hub is not None and isinstance(value, keras_hub.models.Backbone)


def read_preset_config(value):
    """The `config.json` of a local keras-hub preset folder, read once per change, or None.

    Every family that recognises its presets by keras-hub's class name asks
    here, so a folder's config is parsed once (again only when the file
    changes).

    Args:
        value: str or os.PathLike.

    Returns:
        The parsed dict, or None for anything but a folder with a readable
        JSON object in `config.json`.
    """
    if not isinstance(value, (str, os.PathLike)) or not os.path.isdir(value):
        return None
    path = os.path.join(os.fspath(value), "config.json")
    try:
        stamp = os.stat(path).st_mtime_ns
    except OSError:
        return None
    return _read_config(path, stamp)


@functools.lru_cache(maxsize=64)
def _read_config(path, stamp):
    del stamp  # part of the cache key: a changed file is read again
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) else None


def preset_class_name(value):
    """keras-hub's class name in a local preset folder's `config.json`, or None.

    Args:
        value: str or os.PathLike.

    Returns:
        str (e.g. `"WhisperBackbone"`), or None for anything but a readable
        preset folder.
    """
    config = read_preset_config(value)
    return None if config is None else config.get("class_name")


def preset_backbone_class(value):
    """The keras-hub `Backbone` class a preset folder or handle declares, or None.

    The one resolver the families ask: a keras-hub folder is answered from its
    `config.json` (read once, `read_preset_config`) by the registered class
    name; a Hugging Face folder or an `"hf://"` / `"kaggle://"` handle asks
    keras-hub's preset loader (which reads only the config, never the
    weights), once per handle.

    Args:
        value: str or os.PathLike.

    Returns:
        A `keras_hub.models.Backbone` subclass, or None when `value` is not a
        readable preset folder or handle.
    """
    if not isinstance(value, (str, os.PathLike)):
        return None
    value = os.fspath(value)
    config = read_preset_config(value)
    if config is not None and config.get("registered_name"):
        import keras
        import keras_hub  # noqa: F401 - registers keras-hub's classes

        found = keras.saving.get_registered_object(config["registered_name"])
        if found is not None:
            return found
    if config is None and not value.startswith(PRESET_SCHEMES):
        return None
    return _loader_backbone_class(value)


@functools.lru_cache(maxsize=64)
def _loader_backbone_class(value):
    from finetunekit.core._keras_compat import preset_backbone_class as declared_class

    try:
        return declared_class(value)
    except Exception:  # an unreadable handle or folder: the kind that loads it reports why
        return None


def with_policy(backbone, policy):
    """`backbone` computing under `policy`: rebuilt from its config with the same weights if needed."""
    if backbone.dtype_policy.name == policy:
        return backbone
    rebuilt = type(backbone).from_config({**backbone.get_config(), "dtype": policy})
    rebuilt.set_weights(backbone.get_weights())
    return rebuilt


def check_token_options(input_shape, preprocessing, sequence_length, lora_rank, weights):
    """Checks the `FineTuner` options of a backbone on token ids (text encoders, seq2seq).

    Raises:
        ValueError: for an image-only option or a value out of range, naming
            the option and what is accepted.
    """
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
    if weights not in (None, "imagenet", "pretrained"):
        raise ValueError(
            'For a text backbone `weights` must be "pretrained" (the preset\'s weights) or '
            f"None (random). Received: weights={weights!r}"
        )


def load_text_encoder(backbone, weights, policy, preprocessor, sequence_length):
    """Returns `(model, preprocessor)` of a text encoder from a Backbone instance or a preset.

    Args:
        backbone: a keras-hub Backbone, or a preset name / handle / folder.
        weights: `"pretrained"` (or `"imagenet"`) for the preset's weights, None for random.
        policy: str. Dtype policy name.
        preprocessor: a keras-hub preprocessor, or None to load the preset's.
        sequence_length: int or None. The preprocessor's sequence length.

    Returns:
        `(backbone, preprocessor)`.

    Raises:
        ValueError: a Backbone instance without its preprocessor.
    """
    import keras_hub

    if is_keras_hub_backbone(backbone):
        if preprocessor is None:
            raise ValueError(
                f"A keras_hub Backbone instance ({type(backbone).__name__}) needs its "
                "tokenizer: pass preprocessor=keras_hub.models.TextClassifierPreprocessor"
                "(...) (or *.from_preset(...)) to FineTuner."
            )
        return with_policy(backbone, policy), preprocessor
    preset = os.fspath(backbone)
    model = keras_hub.models.Backbone.from_preset(
        preset, load_weights=weights is not None, dtype=policy
    )
    if preprocessor is None:
        options = {} if sequence_length is None else {"sequence_length": int(sequence_length)}
        preprocessor = keras_hub.models.TextClassifierPreprocessor.from_preset(preset, **options)
    return model, preprocessor
