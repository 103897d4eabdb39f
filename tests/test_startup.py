"""First contact: a cheap `import finetunekit`, a fast `--help` and quiet CLI output.

Every check runs in a fresh process without `TF_CPP_MIN_LOG_LEVEL`, as a user
would run it (conftest.py sets that variable for the test process itself).
"""

import json
import os
import subprocess
import sys
import time

import pytest

import finetunekit
from tests.conftest import tiny_cnn, write_images
from tests.test_bad_inputs_cli import TF_NOTICE

HEAVY = ("tensorflow", "keras", "keras_hub", "tensorflow_datasets", "tensorflow_text")
HELP_ARGS = [["--help"], ["--version"]] + [
    [command, "--help"] for command in ("demo", "fit", "evaluate", "predict", "export")
]


def _user_env():
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def _python(code, timeout=120):
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
        env=_user_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _cli(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "finetunekit", *map(str, args)],
        capture_output=True, text=True, timeout=timeout, env=_user_env(),
    )  # fmt: skip


def test_import_loads_no_heavy_module():
    done = _python(
        "import sys, json, finetunekit as fk\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    assert json.loads(done.stdout) == []


def test_every_public_name_resolves_without_text_or_tfds_stacks():
    names = finetunekit.__all__
    done = _python(
        "import sys, json\n"
        + "".join(f"from finetunekit import {name}\n" for name in names)
        + "import finetunekit as fk\n"
        "assert fk.FineTuner.__name__ == 'FineTuner' and fk.heads.ClassificationHead\n"
        "assert fk.ClassificationHead is fk.heads.ClassificationHead\n"
        "assert set(fk.__all__) <= set(dir(fk))\n"
        "print(json.dumps([m for m in ('keras_hub', 'tensorflow_datasets', 'tensorflow_text') "
        "if m in sys.modules]))"
    )
    assert json.loads(done.stdout) == []


def test_all_matches_the_lazy_table():
    expected = set(finetunekit._EXPORTS) | set(finetunekit._SUBMODULES) | {"__version__"}
    assert set(finetunekit.__all__) == expected
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        finetunekit.not_a_name  # noqa: B018


def test_every_built_in_family_head_is_public():
    """The family registry and `fk.__all__` / `fk.heads.__all__` name the same built-in heads.

    `__all__` is spelled out so that `import finetunekit` stays cheap; a plugin's
    heads resolve as `fk.<Name>` from the registry (tests/test_custom_head.py).
    """
    from finetunekit.core.family import families
    from finetunekit.families import BUILTIN

    built_in = {head.__name__ for name, family in families().items() if name in BUILTIN
                for head in family.heads}
    exported = {name for name in finetunekit.__all__ if name.endswith("Head")}
    assert built_in == exported
    assert built_in <= set(finetunekit.heads.__all__)


def test_load_works_in_a_fresh_process(tmp_path):
    """fk.load registers every finetunekit Keras class although nothing was imported yet."""
    from tests.conftest import tiny_tuner

    path = str(tmp_path / "m.keras")
    tiny_tuner().save(path)
    done = _python(f"import finetunekit as fk\nprint(type(fk.load({path!r})).__name__)")
    assert done.stdout.strip() == "FineTuner"


@pytest.mark.parametrize("args", HELP_ARGS, ids=" ".join)
def test_help_and_version_do_not_import_tensorflow(args):
    done = _python(
        "import sys, json\n"
        "from finetunekit.cli import main\n"
        f"code = main({args!r})\n"
        f"print(json.dumps([code, [m for m in {HEAVY!r} if m in sys.modules]]))"
    )
    code, loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert code == 0 and loaded == []


def test_help_takes_under_a_second():
    times = []
    for _ in range(3):  # the best of three: the machine may be busy
        start = time.perf_counter()
        done = _cli("--help", timeout=60)
        times.append(time.perf_counter() - start)
        assert done.returncode == 0 and "usage: finetunekit" in done.stdout
    assert min(times) < 1.0, times


def test_cli_prints_no_tensorflow_notices(tmp_path):
    """demo --help, fit and predict in fresh processes: no C++ start-up lines."""
    data = write_images(str(tmp_path / "photos"), {"cat": 4, "dog": 4}, size=(16, 16))
    backbone = tmp_path / "tiny.keras"
    tiny_cnn().save(backbone)
    model = tmp_path / "m.keras"
    runs = [
        _cli("demo", "--help"),
        _cli("fit", "--backbone", backbone, "--preprocessing", "zero_one", "--data", data,
             "--out", model, "--epochs", "2"),  # fmt: skip
        _cli("predict", "--model", model, os.path.join(data, "cat")),
    ]
    for done in runs:
        output = done.stdout + done.stderr
        assert done.returncode == 0, output[-3000:]
        assert not TF_NOTICE.search(output), output[-3000:]
    assert "Epoch 2/2" in runs[1].stdout and "Saved" in runs[1].stdout
    assert len(runs[2].stdout.strip().splitlines()) == 4


# A user's script: the first Keras-backed name (fk.FineTuner) loads TensorFlow;
# a tiny fit, evaluate and predict with Keras' default verbosity, then a warning of its own.
LIBRARY_SCRIPT = """
import sys, warnings
import numpy as np
import finetunekit as fk
FineTuner = fk.FineTuner
import keras
inputs = keras.Input((8, 8, 3))
features = keras.layers.Conv2D(2, 3, name="block1_conv")(inputs)
ft = FineTuner(keras.Model(inputs, features), head=fk.ClassificationHead(2),
               preprocessing="zero_one")
x = np.random.default_rng(0).integers(0, 255, (8, 8, 8, 3)).astype("uint8")
y = np.arange(8) % 2
ft.fit(x, y, epochs=2, batch_size=4)
ft.evaluate(x, y, batch_size=4)
ft.predict(x, batch_size=4)
import tensorflow as tf  # an int64 op in a tf.data function, as the text tokenizers have: with
# oneDNN (on by default) on a CPU without AVX-512, TensorFlow logs a one-time error-level notice
list(tf.data.Dataset.from_tensors(tf.ones((1, 2), tf.int64)).map(tf.transpose))
warnings.warn("a warning of the user's own")
print("done", flush=True)
"""


@pytest.fixture(scope="module")
def library_run(tmp_path_factory):
    """The script above in a fresh process, stdout redirected to a file: (stdout, stderr)."""
    log = tmp_path_factory.mktemp("log") / "out.log"
    with open(log, "w") as stdout:
        done = subprocess.run(
            [sys.executable, "-c", LIBRARY_SCRIPT], stdout=stdout, stderr=subprocess.PIPE,
            text=True, timeout=300, env=_user_env(),
        )  # fmt: skip
    output = log.read_text()
    assert done.returncode == 0, done.stderr[-3000:]
    return output, done.stderr


def test_library_prints_no_tensorflow_notices(library_run):
    """fk.FineTuner loads TensorFlow without its C++ lines; the user's own warning still shows."""
    stdout, stderr = library_run
    assert not TF_NOTICE.search(stderr), stderr[-3000:]
    assert "cudart_stub" not in stderr and "cpu_feature_guard" not in stderr
    assert "UserWarning: a warning of the user's own" in stderr
    assert stdout.rstrip().endswith("done")


def test_progress_written_to_a_file_has_no_redraws(library_run):
    """With stdout redirected, fit/evaluate/predict print plain lines, no ANSI codes or \\r."""
    stdout, _ = library_run
    assert "\x1b[" not in stdout and "\r" not in stdout, repr(stdout[:500])
    assert "Epoch 1/2" in stdout and "Epoch 2/2" in stdout
    assert stdout.count("2/2 - ") >= 4  # one summary line per epoch, evaluate and predict


NOTICES_SCRIPT = r"""
import os, sys, warnings
from finetunekit.core.console import native_notices_hidden
with native_notices_hidden():
    os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
    os.write(2, b"I0000 00:00:1796325440.358926   18551 cudart_stub.cc:31] Could not find cuda drivers.\n")
    os.write(2, b"E0000 00:00:1796325440.471956   18551 cuda_executor.cc:1228] failed call to cuInit\n")
    os.write(2, b"To enable the following instructions: AVX2 FMA, in other operations, rebuild.\n")
    os.write(2, b"a line of another library\n")
    warnings.warn("a warning raised while TensorFlow loads")
    print("python stderr", file=sys.stderr)
print("after", file=sys.stderr)
"""


@pytest.mark.parametrize("level", [None, "0"])
def test_native_notices_are_filtered_unless_level_0(level):
    """Only TensorFlow's native notice lines are held back; TF_CPP_MIN_LOG_LEVEL=0 shows them."""
    env = _user_env()
    if level is not None:
        env["TF_CPP_MIN_LOG_LEVEL"] = level
    done = subprocess.run(
        [sys.executable, "-c", NOTICES_SCRIPT], capture_output=True, text=True, timeout=60,
        env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    kept = ["a line of another library", "UserWarning: a warning raised while TensorFlow loads",
            "python stderr", "after"]  # fmt: skip
    assert all(line in done.stderr for line in kept), done.stderr
    notices = ("absl::InitializeLog", "cudart_stub", "cuInit", "To enable the following")
    shown = [notice for notice in notices if notice in done.stderr]
    assert shown == ([] if level is None else list(notices)), done.stderr


class _Terminal:
    def isatty(self):
        return True


def test_progress_verbosity_keeps_the_bar_on_a_terminal_only(monkeypatch):
    from finetunekit.core.console import progress_verbosity

    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    monkeypatch.delenv("PYCHARM_HOSTED", raising=False)
    monkeypatch.setattr(sys, "stdout", _Terminal())
    assert [progress_verbosity(v) for v in ("auto", 1, 2, 0)] == ["auto", 1, 2, 0]
    monkeypatch.setattr(sys, "stdout", open(os.devnull, "w"))  # noqa: SIM115
    assert [progress_verbosity(v) for v in ("auto", 1, True, 2, 0)] == [2, 2, 2, 2, 0]
