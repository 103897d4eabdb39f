"""Checks on model and weights files: damaged files, and save-path names.

A `.keras` file is a zip archive and a `.weights.h5` file an HDF5 file; a
save or copy cut short leaves a file that exists but cannot be read. These
checks say so (with the size and, inside a `checkpoint_dir`, the last good
checkpoint) instead of Keras' "File not found" or an h5py traceback.
`check_save_path` applies Keras' file-name rules to the path the user gave.
"""

import json
import os
import zipfile

import keras


class CorruptFileError(ValueError):
    """A model or weights file exists but cannot be read (truncated or damaged)."""


def check_weights_file(path):
    """Checks that an existing `.weights.h5` file is a whole HDF5 file.

    Args:
        path: str. The weights file.

    Raises:
        CorruptFileError: not HDF5, or a truncated or damaged HDF5 file.

    Example:
    ```python
    check_weights_file("backbone.weights.h5")
    ```
    """
    import h5py

    path = os.fspath(path)
    size = _size(path)
    fix = "Save the weights again with save_weights(), or restore the file from a copy."
    if not h5py.is_hdf5(path):
        raise CorruptFileError(
            f"{path!r} exists but is not an HDF5 weights file ({size}; no HDF5 signature). "
            f"A .weights.h5 file is written by save_weights(). {fix}"
        )
    try:
        with h5py.File(path, "r"):
            pass
    except OSError as error:
        raise CorruptFileError(
            f"{path!r} exists but is a truncated or damaged HDF5 weights file ({size}; "
            f"h5py: {error}). {fix}"
        ) from error


def _size(path):
    size = os.path.getsize(path)
    return "empty, 0 bytes" if size == 0 else f"{size:,} bytes"


def corrupt_archive_error(path, detail):
    """The `CorruptFileError` for an unreadable `.keras` file.

    Args:
        path: str. The existing file.
        detail: str. What is wrong with it (e.g. "is damaged (Bad CRC-32 ...)").

    Returns:
        A `CorruptFileError` naming the file, its size, what is wrong and the
        fix (the last good checkpoint when there is one).

    Example:
    ```python
    raise corrupt_archive_error("best.keras", "has no zip directory at its end")
    ```
    """
    hint = last_good_checkpoint(path) or (
        "An interrupted save or copy probably cut it short or damaged it: save the model "
        "again, or restore the file from a copy."
    )
    return CorruptFileError(
        f"{path!r} exists but is not a valid Keras archive (a .keras file is a zip "
        f"archive): it is {_size(path)} and {detail}. {hint}"
    )


def last_good_checkpoint(path):
    """Names the resumable training state beside a damaged `checkpoint_dir/best.keras`.

    Args:
        path: str. A model file in a folder that may hold a `backup/` folder
            (written by `fit(checkpoint_dir=...)`).

    Returns:
        str or None: a sentence naming the last good checkpoint and how to
        resume from it, or None when there is none.

    Example:
    ```python
    last_good_checkpoint("checkpoints/best.keras")
    ```
    """
    import h5py

    folder = os.path.dirname(os.path.abspath(os.fspath(path)))
    backup = os.path.join(folder, "backup")
    for name in ("latest.weights.h5", "latest.weights.h5.bkp"):
        weights = os.path.join(backup, name)
        if not (os.path.isfile(weights) and h5py.is_hdf5(weights)):
            continue
        metadata = os.path.join(backup, "training_metadata.json")
        if name.endswith(".bkp"):
            metadata += ".bkp"
        try:
            with open(metadata) as f:
                epochs = f" after epoch {json.load(f)['epoch']}"
        except (OSError, ValueError, KeyError):
            epochs = ""
        return (
            f"The last good checkpoint is the training state in {weights!r}{epochs}: rerun "
            f"the same fit(..., checkpoint_dir={folder!r}) to resume from it and save again."
        )
    return None


def check_save_path(filepath, zipped=None, weights=False):
    """Checks Keras' file-name rules on the user's path (Keras only sees the temporary one).

    Args:
        filepath: str. Where `save` or `save_weights` will write.
        zipped: bool or None. The `zipped` argument of `save`.
        weights: bool. Check for `save_weights` (a `.weights.h5` file).

    Raises:
        ValueError: the name does not fit, naming the expected suffix.

    Example:
    ```python
    check_save_path("model.keras")
    ```
    """
    name = os.fspath(filepath)
    if weights and not name.endswith(".weights.h5"):
        raise ValueError(
            f'save_weights() writes a ".weights.h5" file. Received: filepath={name!r}. Use a '
            'path ending in ".weights.h5".'
        )
    if not weights and zipped is False and name.endswith(".keras"):
        raise ValueError(
            "With zipped=False, save() writes a folder, whose name must not end in "
            f'".keras". Received: filepath={name!r}. Drop the suffix, or save zipped.'
        )
    if not weights and zipped is not False and not name.endswith((".keras", ".h5", ".hdf5")):
        raise ValueError(
            f'save() writes a ".keras" file. Received: filepath={name!r}. Use a path ending '
            'in ".keras"; to serve the model, use export(folder) instead.'
        )


#: The first bytes of every HDF5 file (a `.keras` archive keeps its weights in one).
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _check_archive(path):
    """Raises `CorruptFileError` unless `path` is a zip with a JSON config and HDF5 weights."""
    if not zipfile.is_zipfile(path):
        raise corrupt_archive_error(path, "has no zip directory at its end (truncated)")
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if "config.json" not in names:
                raise corrupt_archive_error(
                    path, "is a zip archive without the config.json a Keras model file holds"
                )
            json.loads(archive.read("config.json"))
            if "model.weights.h5" in names:
                with archive.open("model.weights.h5") as weights:
                    if weights.read(len(HDF5_SIGNATURE)) != HDF5_SIGNATURE:
                        raise corrupt_archive_error(
                            path, "holds weights (model.weights.h5) that are not an HDF5 file"
                        )
    except (zipfile.BadZipFile, EOFError, OSError) as error:
        raise corrupt_archive_error(path, f"is damaged ({error})") from error
    except (ValueError, UnicodeDecodeError) as error:
        if isinstance(error, CorruptFileError):
            raise
        raise corrupt_archive_error(path, f"has a config.json that is not JSON ({error})") from None


def _raise_load_error(path, error, unsafe_fix):
    """Turns Keras' `ValueError`s on loading into errors naming the file and the fix."""
    text = str(error)
    if "safe_mode" in text or "Lambda" in text:
        fix = unsafe_fix or (
            "Load it with fk.load(path, safe_mode=False) only if you trust its source."
        )
        raise ValueError(
            f"{path!r} holds code (a Lambda layer or other Python bytecode) that Keras "
            f"safe mode will not run. {fix}" + ("" if unsafe_fix else f" ({error})")
        ) from error
    if "could not be loaded" in text:
        detail = text.split("Example error message for object ")[-1].split("List of objects")[0]
        raise CorruptFileError(
            f"{path!r}: its weights do not fit its model ({' '.join(detail.split())[:200]}); "
            "the archive was put together from two different models or damaged. Save the "
            "model again from the FineTuner that trained it."
        ) from None


def read_keras_file(path, compile=False, safe_mode=True, unsafe_fix=None):
    """Loads an existing `.keras` file, turning a damaged archive into `CorruptFileError`.

    Args:
        path: str. An existing `.keras` file (or unzipped `.keras` folder).
        compile: bool. Restore the training configuration. Defaults to `False`.
        safe_mode: bool. Keras safe mode. Defaults to `True`.
        unsafe_fix: str or None. What the caller's user can do when safe mode
            refuses code in the file; defaults to `fk.load(path, safe_mode=False)`.

    Returns:
        The loaded model.

    Raises:
        CorruptFileError: the file is not a whole zip archive.
        ValueError: safe mode refused code in the file.

    Example:
    ```python
    backbone = read_keras_file("backbone.keras")
    ```
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(
            f"{path!r} is a folder, not a .keras file: fk.load reads the one zip file that "
            'ft.save("model.keras") writes. A folder written by ft.export(folder) is served '
            "with tf.saved_model.load(folder)."
        )
    if os.path.isfile(path):
        _check_archive(path)
    try:
        return keras.saving.load_model(path, compile=compile, safe_mode=safe_mode)
    except (zipfile.BadZipFile, EOFError) as error:
        raise corrupt_archive_error(path, f"is damaged ({error})") from error
    except TypeError as error:
        if "Could not locate" not in str(error):
            raise
        raise ValueError(
            f"{path!r} names a class this Python session does not know "
            f"({str(error).split('.')[0].replace('Could not locate ', '')}); no code from the "
            "file was run. Import the module that defines it (a finetunekit plugin: its "
            "plugin.py) before loading, or load files only from sources you trust."
        ) from None
    except ValueError as error:
        _raise_load_error(path, error, unsafe_fix)
        raise
