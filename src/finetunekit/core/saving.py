"""Saving and loading FineTuner models without ever leaving a half-written file.

`fk.saving.save_model` / `save_weights` (what `FineTuner.save` and
`save_weights` call) and every other file finetunekit writes go through
`atomic_path` (see `finetunekit.core.files`): written under a temporary name in the
target's folder, synced, then moved over the target, so a crash leaves the
previous file whole. `fk.load` reports a damaged archive as damaged, naming the
last good checkpoint when there is one.
"""

import os

from finetunekit.core.file_checks import (  # noqa: F401 - re-exported as fk.saving.*
    CorruptFileError,
    check_save_path,
    check_weights_file,
    corrupt_archive_error,
    last_good_checkpoint,
    read_keras_file,
)
from finetunekit.core.files import (  # noqa: F401 - re-exported as fk.saving.*
    ASIDE_PREFIX,
    TEMP_PREFIX,
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    clean_leftovers,
    refuse_overwrite,
    save_model,
    save_weights,
)


def load(path, safe_mode=True, compile=True):
    """Loads a model saved with `FineTuner.save` (or any `.keras` file).

    Args:
        path: str. A `.keras` file.
        safe_mode: bool. Keras safe mode: refuse files that would run
            arbitrary code (Lambda layers with Python bytecode). Only pass
            `False` for files you trust. Defaults to `True`.
        compile: bool. Restore the training configuration. Defaults to `True`.

    Returns:
        The loaded model (a `FineTuner` for files saved from one).

    Raises:
        FileNotFoundError: no file at `path`.
        CorruptFileError: the file is not a readable `.keras` archive
            (truncated or damaged); names the last good checkpoint when the
            file sits in a `checkpoint_dir`.

    Example:
    ```python
    ft.save("model.keras")
    ft2 = fk.load("model.keras")
    ```
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No saved model at {path!r}.")
    if not path.endswith(".keras"):
        raise ValueError(f'fk.load reads ".keras" files. Received: {path!r}')
    return read_keras_file(path, compile=compile, safe_mode=safe_mode)
