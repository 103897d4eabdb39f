"""What finetunekit lets reach the terminal: no TensorFlow start-up notices, no redraws in logs.

TensorFlow's C++ code writes notices to file descriptor 2 while it loads and
first looks for devices (`cudart_stub`, `cpu_feature_guard`, `cuInit`, "All
log messages before absl::InitializeLog() ..."), some of them before its
logging is configured, so `TF_CPP_MIN_LOG_LEVEL` alone cannot hide them.
`import_tensorflow_quietly` loads TensorFlow with those lines filtered out and
everything else on stderr (Python warnings, errors) passed through.
`TF_CPP_MIN_LOG_LEVEL=0` shows them all.

Keras redraws its progress bar with carriage returns and ANSI colours, which
a log file keeps as raw codes; `progress_verbosity` picks one line per epoch
when standard output is not a terminal.
"""

import contextlib
import os
import re
import sys
import tempfile

__all__ = ["import_tensorflow_quietly", "native_notices_hidden", "progress_verbosity"]

#: Default C++ log level set before TensorFlow loads: errors are still shown.
DEFAULT_TF_LOG_LEVEL = "2"

# An absl-formatted native log line ("I0000 00:00:1796.35 18551 cudart_stub.cc:31] ..."),
# absl's note before its logging starts, and cpu_feature_guard's second line.
_NATIVE_NOTICE = re.compile(
    rb"^(?:[IWEF]\d{4} [\d:.]+\s+\d+ \S+:\d+\] .*"
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called .*"
    rb"|To enable the following instructions: .*)$"
)


def _without_native_notices(text):
    lines = text.splitlines(keepends=True)
    return b"".join(line for line in lines if not _NATIVE_NOTICE.match(line.rstrip(b"\r\n")))


@contextlib.contextmanager
def native_notices_hidden():
    """Filters TensorFlow's native start-up lines out of file descriptor 2 while it runs.

    What is written to stderr inside the block (by C++ or by Python) is held
    back and written out at its end, without the native notice lines. With
    `TF_CPP_MIN_LOG_LEVEL=0`, or without a real stderr file descriptor (a
    captured `sys.stderr`), nothing is filtered.

    Example:
    ```python
    with native_notices_hidden():
        import tensorflow as tf
    ```
    """
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0":
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (AttributeError, OSError, ValueError):  # no real file descriptor
        yield
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(AttributeError, OSError, ValueError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = memoryview(_without_native_notices(held.read()))
            while kept:  # a pipe may take less than all of it at once
                kept = kept[os.write(2, kept):]


def import_tensorflow_quietly():
    """Imports TensorFlow and probes its devices once, without the native start-up notices.

    Sets `TF_CPP_MIN_LOG_LEVEL` to `2` (C++ errors only) unless the user set
    it, then imports TensorFlow inside `native_notices_hidden`. Does nothing
    more when TensorFlow is already loaded. Python warnings are untouched.
    (`import finetunekit` also sets `TF_ENABLE_ONEDNN_OPTS`: see the package.)

    Returns:
        The `tensorflow` module, or None when it is not installed.

    Example:
    ```python
    tf = import_tensorflow_quietly()
    ```
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", DEFAULT_TF_LOG_LEVEL)
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    try:
        with native_notices_hidden():
            import tensorflow as tf

            tf.config.list_physical_devices()  # the device probe writes cuInit's lines
            if os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "1":
                _log_onednn_int64_notice(tf)
    except ImportError:  # pragma: no cover - another Keras backend
        return None
    return tf


def _log_onednn_int64_notice(tf):
    """Has oneDNN write its one-time int64 notice now, while native notices are filtered.

    With oneDNN on (`import finetunekit` turns it on) and a CPU without
    AVX-512, TensorFlow logs once per process, as an error, "oneDNN supports
    DT_INT64 only on platforms with AVX-512. Falling back to the default
    Eigen-based implementation" at the first int64 op of a `tf.data`
    function it could hand to oneDNN (the text tokenizers' transposes). It
    is a notice, not an error: an int64 transpose in a tiny pipeline makes
    TensorFlow write it here instead of in the middle of `fit`.
    """
    for _ in tf.data.Dataset.from_tensors(tf.zeros((1, 2), tf.int64)).map(tf.transpose):
        pass


def _live_terminal():
    """True where a redrawn progress bar displays well: a terminal or a notebook."""
    try:
        terminal = sys.stdout.isatty()
    except (AttributeError, ValueError):  # no stdout, or a closed one
        terminal = False
    return terminal or "ipykernel" in sys.modules or "PYCHARM_HOSTED" in os.environ


def progress_verbosity(verbose):
    """Keras `verbose` for `fit`/`evaluate`/`predict`: no bar redraws where stdout is a file.

    Args:
        verbose: Keras verbosity (`"auto"`, `0`, `1` or `2`).

    Returns:
        `2` (one line per epoch) for `"auto"` or `1` when standard output is
        neither a terminal nor a notebook; otherwise `verbose` unchanged.

    Example:
    ```python
    model.fit(x, y, verbose=progress_verbosity("auto"))
    ```
    """
    if verbose == "auto" or verbose == 1:  # True is 1
        return verbose if _live_terminal() else 2
    return verbose

