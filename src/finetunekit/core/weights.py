"""Loading backbone models and weights from files, and rebuilding a model under a dtype policy."""

import os
import warnings

import keras

from finetunekit.core.file_checks import check_weights_file, read_keras_file
from finetunekit.core.notices import warn_user


def is_model_path(value):
    return isinstance(value, os.PathLike) or (
        isinstance(value, str)
        and (value.endswith((".keras", ".h5")) or os.sep in value or value.startswith("."))
    )


def load_model_file(path, what="backbone"):
    """Loads a `.keras` file with Keras' safe mode, with a clear error if missing."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"The {what} file {path!r} does not exist. Pass the path of a saved "
            '".keras" model, or a keras.applications name such as "resnet50".'
        )
    if not path.endswith(".keras"):
        raise ValueError(
            f'A {what} file must be a ".keras" model file. Received: {path!r}. '
            'For a weights-only file use weights="path/to/file.weights.h5".'
        )
    return read_keras_file(path, compile=False, safe_mode=True, unsafe_fix=_unsafe_fix(what))


def _unsafe_fix(what):
    """What to do with a `.keras` file safe mode refuses, for `backbone=` or `weights=`."""
    then = (
        "FineTuner(backbone=model, ...)" if what == "backbone" else
        'model.save_weights("backbone.weights.h5") and pass '
        'weights="backbone.weights.h5" (or pass the model itself as backbone=model)'
    )
    return (
        f"FineTuner loads {what} files in safe mode and takes no safe_mode argument. Only if "
        "you trust the file's source, load it yourself: model = keras.saving.load_model(path, "
        f"safe_mode=False), then {then}."
    )


def load_weights_file(model, path):
    """Loads backbone weights from a `.weights.h5` or `.keras` file, checking shapes.

    Args:
        model: keras.Model. The backbone to fill.
        path: str. A `.weights.h5` file saved from the same architecture, or a
            `.keras` file holding that backbone (alone or inside a FineTuner).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file does not fit the backbone (names the shapes).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"Weights file not found: {path!r}. Pass weights=None for random "
            'initialisation, weights="imagenet" for the pretrained download, or the '
            'path of an existing ".weights.h5" or ".keras" file.'
        )
    if path.endswith(".keras"):
        source = read_keras_file(
            path, compile=False, safe_mode=True, unsafe_fix=_unsafe_fix("weights")
        )
        candidates = [source] + [
            layer for layer in source.layers if isinstance(layer, keras.Model)
        ]
        target_shapes = [tuple(w.shape) for w in model.weights]
        for candidate in candidates:
            if [tuple(w.shape) for w in candidate.weights] == target_shapes:
                model.set_weights(candidate.get_weights())
                return
        raise ValueError(
            f"The model in {path!r} does not fit the backbone {model.name!r}: no "
            f"sub-model has its {len(target_shapes)} weight shapes. Save weights from "
            "the same architecture and input channels."
        )
    if not path.endswith(".h5"):
        raise ValueError(
            f'Unknown weights file type: {path!r}. Expected ".weights.h5" or ".keras".'
        )
    check_weights_file(path)  # a damaged file says so, not h5py
    before = [w.numpy().copy() for w in model.weights[:1]]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            model.load_weights(path)
    except (ValueError, UserWarning, KeyError) as error:
        raise ValueError(
            f"The weights in {path!r} do not fit the backbone {model.name!r} "
            f"({len(model.weights)} weights, first {tuple(model.weights[0].shape)}): "
            f"{error}. Check the file was saved from the same architecture and "
            "input_shape."
        ) from error
    del before


def clone_with_policy(model, policy):
    """Rebuilds a functional/sequential model with another dtype policy."""
    if keras.config.dtype_policy().name == policy and all(
        layer.dtype_policy.name == policy for layer in model.layers
    ):
        return model

    def clone(layer):
        config = layer.get_config()
        if "dtype" in config and not isinstance(layer, keras.layers.InputLayer):
            config["dtype"] = policy
        return layer.__class__.from_config(config)

    try:
        clone_model = keras.models.clone_model(model, clone_function=clone)
    except Exception:  # subclassed models cannot be cloned
        warn_user(
            f"Could not rebuild {model.name!r} under the {policy!r} policy; it keeps "
            "its own dtypes.",
        )
        return model
    clone_model.set_weights(model.get_weights())
    return clone_model
