"""The bad-input catalogue of the `finetunekit` command line.

One row per case: `(id, argv, exit_code, stream, pattern)`. `argv` is
formatted with the paths of the `places` fixture, run through
`finetunekit.cli.main` (or, for rows in `FRESH_PROCESS`, `python -m
finetunekit` in a new process with the given environment), and `pattern`, a
regular expression, must match the output on `stream` ("err" or "out").
Error patterns name the problem and the fix. Rows with exit code 0 are inputs
that must work. The same table is in docs/errors.md ("Command line").
"""

import os
import re
import subprocess
import sys

import pytest

from finetunekit import cli
from tests.catalogue import undocumented
from tests.conftest import tiny_cnn, write_images

TF_NOTICE = re.compile(r"^(I|W|E)0000 |cuda|oneDNN|All log messages before absl", re.M | re.I)

# fmt: off
CASES = [
    ("data_is_a_file", ["fit", "--backbone", "{backbone}", "--data", "{data}/cat/0.jpg", "--out", "{out}"], 3, "err",
     r"--data '.*0\.jpg' is a file, not a folder\. --data takes a folder with one sub-folder per class"),
    ("evaluate_data_is_a_file", ["evaluate", "--model", "{image_model}", "--data", "{data}/cat/0.jpg"], 3, "err",
     r"--data '.*0\.jpg' is a file, not a folder\. --data takes a folder with one sub-folder per class"),
    ("training_diverges", ["fit", "--backbone", "{backbone}", "--preprocessing", "zero_one", "--data", "{data}", "--out", "{out}",
                           "--epochs", "3", "--learning-rate", "1e38", "--seed", "0", "--quiet"], 3, "err",
     r"error: Training diverged: the (validation )?loss( \(val_loss\))? became (nan|inf) at epoch \d+\b.* Likely causes: .*\nWith the command line: try a 10x lower --learning-rate"),
    ("learning_rate_not_a_number", ["fit", "--backbone", "{backbone}", "--data", "{data}", "--out", "{out}", "--learning-rate", "nan"], 2, "err",
     r"argument --learning-rate: expected a positive number such as 1e-3, got 'nan'"),
    ("imagenet_weights_offline", ["fit", "--backbone", "mobilenetv2", "--data", "{data}", "--out", "{out}"], 2, "err",
     r"--weights imagenet needs a download that failed from https://\S+\.h5: no network.*Use --weights none .*--weights "
     r"path/to/backbone\.weights\.h5 .*Keras cache folder .*keras_home.models/ under the name '[\w.]+\.h5'"),
    ("image_file_to_text_model", ["predict", "--model", "{text_model}", "{data}/cat/0.jpg"], 3, "err",
     r"'.*text\.keras' is a text model, but '.*0\.jpg' is an image file\. Pass the texts themselves, e\.g\. finetunekit predict"),
    ("folder_to_text_model", ["predict", "--model", "{text_model}", "{data}/cat"], 3, "err",
     r"is a text model, but '.*cat' is a folder\. Pass the texts themselves"),
    ("text_to_image_model", ["predict", "--model", "{image_model}", "a great film"], 3, "err",
     r"No such image file or folder: 'a great film'\. '.*image\.keras' is an image model: pass image files or folders of images, not text"),
    ("text_file_to_image_model", ["predict", "--model", "{image_model}", "{notes}"], 3, "err",
     r"'.*notes\.txt' is not an image file, but '.*image\.keras' is an image model: pass image files \(\.jpg"),
    ("fit_out_folder_missing", ["fit", "--backbone", "{backbone}", "--data", "{data}", "--out", "{data}/cat/0.jpg/sub/m.keras"], 3, "err",
     r"--out '.*0\.jpg/sub/m\.keras': the folder '.*0\.jpg/sub' cannot be created \(.*\)\. Choose another path \(checked before training\)"),
    # ---- inputs that must work
    ("predict_folder_in_natural_order", ["predict", "--model", "{image_model}", "{data}/dog"], 0, "out",
     r"\A.*dog/0\.jpg\t.*\n.*dog/1\.png\t.*\n.*dog/2\.jpg\t.*\n(.*\n){7}.*dog/10\.jpg\t.*\n.*dog/11\.png\t"),
    ("evaluate_says_how_many_examples", ["evaluate", "--model", "{image_model}", "--data", "{data}"], 0, "out",
     r"\AScored 24 examples from .*\naccuracy: [01]\.\d{4}\nloss: \d"),
    ("texts_to_text_model", ["predict", "--model", "{text_model}", "a great film", "dull movie"], 0, "out",
     r"\Aa great film\t(negative|positive)\t[01]\.\d{4}\ndull movie\t(negative|positive)\t"),
]
# fmt: on

# Rows run in a new process: Keras reads KERAS_HOME at import, and the proxy
# that refuses every connection stands for "no network" without a network.
FRESH_PROCESS = {
    "imagenet_weights_offline": {
        "KERAS_HOME": "{keras_home}",
        "https_proxy": "http://127.0.0.1:9",
        "http_proxy": "http://127.0.0.1:9",
        "no_proxy": "",
    }
}


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    """Image data, a tiny image model fitted by the CLI and a tiny saved text model."""
    root = tmp_path_factory.mktemp("cli_bad")
    data = write_images(str(root / "photos"), {"cat": 12, "dog": 12}, size=(16, 16))
    backbone = str(root / "tiny.keras")
    tiny_cnn().save(backbone)
    image_model = str(root / "image.keras")
    argv = ["fit", "--backbone", backbone, "--preprocessing", "zero_one", "--data", data,
            "--out", image_model, "--epochs", "1", "--seed", "0", "--quiet"]  # fmt: skip
    assert cli.main(argv) == 0
    notes = root / "notes.txt"
    notes.write_text("a great film\n")
    return {
        "data": data,
        "backbone": backbone,
        "image_model": image_model,
        "text_model": _text_model(str(root / "text.keras")),
        "notes": str(notes),
        "keras_home": str(root / "keras_home"),
    }


def _text_model(path):
    from tests.test_text import LABELS, TEXTS, text_tuner

    ft = text_tuner()
    ft.fit(TEXTS, LABELS, epochs=1, batch_size=8, verbose=0)
    ft.save(path)
    return path


def _run(argv, env, capsys):
    """Returns `(exit_code, stdout, stderr)` of the command line."""
    if env is None:
        code = cli.main(argv)
        captured = capsys.readouterr()
        return code, captured.out, captured.err
    environment = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run(
        [sys.executable, "-m", "finetunekit", *argv],
        capture_output=True,
        text=True,
        timeout=300,
        env={**environment, "CUDA_VISIBLE_DEVICES": "", **env},
    )
    return done.returncode, done.stdout, done.stderr


@pytest.mark.parametrize(
    "case_id,argv,exit_code,stream,pattern", CASES, ids=[c[0] for c in CASES]
)
def test_cli_bad_input(case_id, argv, exit_code, stream, pattern, places, tmp_path, capsys):
    out = str(tmp_path / "model.keras")
    argv = [a.format(out=out, **places) for a in argv]
    env = FRESH_PROCESS.get(case_id)
    if env is not None:
        env = {k: v.format(**places) for k, v in env.items()}
    code, stdout, stderr = _run(argv, env, capsys)
    text = {"out": stdout, "err": stderr}[stream]
    assert code == exit_code, stdout[-2000:] + stderr[-2000:]
    assert re.search(pattern, text), text[-3000:]
    assert "Traceback" not in stderr
    assert not TF_NOTICE.search(stdout + stderr), stdout + stderr
    if exit_code:
        assert not os.path.exists(out)  # a failed run saves nothing


def test_cli_catalogue_is_documented():
    ids = [c[0] for c in CASES]
    assert set(FRESH_PROCESS) <= set(ids)
    assert undocumented(ids, "Command line") == []
