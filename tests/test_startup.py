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
