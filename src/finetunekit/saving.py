"""Loading saved FineTuner models."""

import os

import keras


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
    try:
        return keras.saving.load_model(path, compile=compile, safe_mode=safe_mode)
    except ValueError as error:
        if "safe_mode" in str(error) or "Lambda" in str(error):
            raise ValueError(
                f"{path!r} holds code (a Lambda layer or other Python bytecode) that Keras "
                "safe mode will not run. Load it with fk.load(path, safe_mode=False) only if "
                f"you trust its source. ({error})"
            ) from error
        raise
