"""The extras check every example runs first: a missing package stops it before TensorFlow loads."""

import importlib.util
import os
import sys


def check_extras(extras, script):
    """Exits with the pip commands to run when a package `script` needs is missing.

    Args:
        extras: import name -> what to `pip install` for it.
        script: the example's `__file__`; its name starts the message.

    Example:

    ```python
    check_extras({"matplotlib": '"finetunekit[plot]"'}, __file__)
    ```
    """
    missing = [name for name in extras if importlib.util.find_spec(name) is None]
    if missing:
        installs = dict.fromkeys(extras[name] for name in missing)
        commands = "".join(f"\n    pip install {extra}" for extra in installs)
        sys.exit(f"{os.path.basename(script)} needs {', '.join(missing)}, not installed:{commands}")
