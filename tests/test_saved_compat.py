"""Models saved by the previous release load with today's code and predict the same.

`tests/fixtures/saved_v0_1/` holds one tiny `.keras` model per family and kind,
saved by finetunekit 0.1 (commit 3b11311, before the package was re-cut into
core / training / generation / families / tuner / cli), with its raw inputs,
its `predict` outputs and its task-method answers (`NAME.npz`). They were made
by `tests/make_saved_fixtures.py` (how: `tests/fixtures/saved_v0_1/README.md`).
"""

import json
import pathlib

import numpy as np
import pytest

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "saved_v0_1"
NAMES = sorted(path.stem for path in FIXTURES.glob("*.keras"))
ATOL = 1e-5


def _inputs(stored, meta):
    """The raw inputs of the fixture, as the model was given them."""
    import pandas as pd

    inputs = {}
    for name, kind in meta["inputs"].items():
        if kind == "dataframe":
            prefix = f"in__{name}__"
            columns = [key for key in stored.files if key.startswith(prefix)]
            inputs[name] = pd.DataFrame({key[len(prefix):]: stored[key] for key in columns})
        elif kind == "texts":
            inputs[name] = [str(text) for text in stored[f"in__{name}"]]
        else:
            inputs[name] = stored[f"in__{name}"]
    return inputs


def _plain(value):
    """Answers as plain JSON values (what the fixture stored)."""
    return json.loads(json.dumps(value, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v)))


def assert_same(actual, expected, where="answer"):
    """Equal structures; numbers within ATOL (relative 1e-5), everything else exactly."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and sorted(actual) == sorted(expected), where
        for key in expected:
            assert_same(actual[key], expected[key], f"{where}[{key!r}]")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), (
            f"{where}: {actual!r} != {expected!r}"
        )
        for index, (a, e) in enumerate(zip(actual, expected)):
            assert_same(a, e, f"{where}[{index}]")
    elif isinstance(expected, float) and not isinstance(actual, bool):
        assert isinstance(actual, (int, float)), f"{where}: {actual!r} != {expected!r}"
        np.testing.assert_allclose(actual, expected, atol=ATOL, rtol=1e-5, err_msg=where)
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


def test_every_family_has_a_fixture():
    families = set()
    for name in NAMES:
        with np.load(FIXTURES / f"{name}.npz") as stored:
            families.add(json.loads(str(stored["meta"]))["family"])
    assert families >= {
        "classification", "text", "segmentation", "detection", "seq2seq", "speech",
        "recommendation", "vector",
    }


def _registered_names(name):
    """The `finetunekit>...` classes a saved file's config names."""
    import zipfile

    found = set()

    def walk(value):
        if isinstance(value, dict):
            if str(value.get("registered_name")).startswith("finetunekit>"):
                found.add(value["registered_name"])
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    with zipfile.ZipFile(FIXTURES / f"{name}.keras") as archive:
        walk(json.loads(archive.read("config.json")))
    return found


def test_fk_load_registers_every_saved_class_in_a_fresh_process():
    """`fk.load` finds every class a saved file names before anything was built.

    In the test process, building a model imports modules (and registers their
    classes) that a fresh `fk.load` must find by itself, e.g. the warm-start
    backbone's, so this looks them up in a new interpreter.
    """
    import os
    import subprocess
    import sys

    names = sorted(set().union(*(_registered_names(name) for name in NAMES)))
    assert "finetunekit>FineTuner" in names and "finetunekit>WarmStartBackbone" in names
    script = (
        "import json, sys, keras, finetunekit as fk\n"
        "fk.load  # what fk.load(path) registers first\n"
        "print(json.dumps([n for n in sys.argv[1:] "
        "if keras.saving.get_registered_object(n) is None]))\n"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"}
    done = subprocess.run([sys.executable, "-c", script, *names], capture_output=True,
                          text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


@pytest.mark.parametrize("name", NAMES)
def test_saved_model_loads_and_predicts_the_same(name):
    import finetunekit as fk

    with np.load(FIXTURES / f"{name}.npz") as stored:
        meta = json.loads(str(stored["meta"]))
        inputs = _inputs(stored, meta)
        expected = stored["outputs"]
    ft = fk.load(str(FIXTURES / f"{name}.keras"))
    assert isinstance(ft, fk.FineTuner)
    assert ft.class_names == meta["class_names"]
    outputs = ft.predict(inputs["x"], verbose=0, **meta["predict_kwargs"])
    assert outputs.shape == expected.shape and outputs.dtype == expected.dtype
    np.testing.assert_allclose(outputs, expected, atol=ATOL, rtol=1e-5)
    for call, answer in zip(meta["calls"], meta["answers"]):
        kwargs = {k: inputs[v] if k == "seen" else v for k, v in call["kwargs"].items()}
        actual = getattr(ft, call["method"])(inputs[call["input"]], **kwargs)
        assert_same(_plain(actual), answer, f"{name}: {call['method']}({call['kwargs']})")
