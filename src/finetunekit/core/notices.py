"""Warnings that point at the user's own line, not at finetunekit's.

A warning raised deep inside `fit` (a pipeline, a callback) is reported by
Python at the line `stacklevel` frames up. `warn_user` skips the frames of
finetunekit and of the libraries it calls into (Keras, keras-hub, TensorFlow)
and reports the first frame outside them: the user's call.
"""

import importlib.util
import inspect
import os
import warnings


def _folder(name):
    spec = importlib.util.find_spec(name)  # finds the package without importing it
    if spec is None or not spec.origin:
        return None
    return os.path.dirname(os.path.abspath(spec.origin)) + os.sep


_LIBRARY_FOLDERS = tuple(
    folder for folder in map(_folder, ("finetunekit", "keras", "keras_hub", "tensorflow")) if folder
)
_STDLIB_HELPERS = (os.sep + "contextlib.py", os.sep + "functools.py")


def _is_library(filename):
    if filename.startswith("<frozen"):
        return True
    path = os.path.abspath(filename)
    return path.startswith(_LIBRARY_FOLDERS) or path.endswith(_STDLIB_HELPERS)


def warn_user(message, category=UserWarning):
    """`warnings.warn`, reported at the user's line rather than at finetunekit's.

    Args:
        message: str. What is suspicious, with counts, and what to do.
        category: a `Warning` subclass. Defaults to `UserWarning`.

    Returns:
        None.

    Example:
    ```python
    warn_user("3 of 10 images could not be read and were skipped.")
    ```
    """
    frame = inspect.currentframe().f_back  # the library function that warns
    level = 2  # stacklevel 2 reports that function's line; each step up adds one
    while frame is not None and _is_library(frame.f_code.co_filename):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)
