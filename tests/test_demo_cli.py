"""The `finetunekit demo` transfer-learning demo and the `finetunekit` command line."""

import io
import json
import os
import re
import subprocess
import sys

import pytest

from finetunekit import cli
from finetunekit.cli import commands as cli_commands
from finetunekit.cli import predict as cli_predict
from tests.conftest import write_images

COMMANDS = ("demo", "fit", "evaluate", "predict", "export")


def _run_module(*args, timeout=180):
    """Runs `python -m finetunekit ARGS` in a fresh process (pays the TF import)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    return subprocess.run(
        [sys.executable, "-m", "finetunekit", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


# ---------------------------------------------------------------------- demo
def test_demo_transfer_beats_scratch(monkeypatch):
    """The demo shows a line as each step starts and ends (stderr), then its result (stdout)."""
    output = io.StringIO()  # both streams, in the order they were written
    monkeypatch.setattr(sys, "stdout", output)
    monkeypatch.setattr(sys, "stderr", output)
    assert cli.main(["demo", "--json"]) == 0
    text = output.getvalue()
    progress = re.findall(r"^finetunekit demo: ([123])/3 (\w+)", text[: text.index("{")], re.M)
    assert progress == [("1", "pretraining"), ("1", "done"), ("2", "fine"), ("2", "done"),
                        ("3", "training"), ("3", "done")], text  # fmt: skip
    result = json.loads(text[text.index("{") :])
    for key in ("transfer_accuracy", "scratch_accuracy"):
        assert 0.0 <= result[key] <= 1.0
    assert result["num_test"] > 500
    assert result["num_train"] == 5 * result["labels_per_class"]
    # Pretrained features must clearly help on the few labelled images.
    assert result["transfer_accuracy"] > result["scratch_accuracy"] + 0.05, result
    assert result["total_seconds"] > 0


def test_demo_table_format():
    from finetunekit.cli.demo import format_report

    result = {
        "seed": 0,
        "labels_per_class": 5,
        "num_train": 25,
        "num_test": 876,
        "epochs": 40,
        "pretrain_seconds": 10.0,
        "transfer_accuracy": 0.7,
        "transfer_seconds": 5.0,
        "scratch_accuracy": 0.5,
        "scratch_seconds": 4.0,
        "total_seconds": 20.0,
    }
    table = format_report(result, num_source=921)
    assert "method" in table and "accuracy" in table and "seconds" in table
    assert "0.700" in table and "0.500" in table
    assert "from scratch" in table


def test_digit_frames_keep_every_digit():
    from finetunekit.cli.demo import load_digit_frames

    images, labels = load_digit_frames(16, seed=3)
    assert images.shape == (1797, 16, 16, 1) and labels.shape == (1797,)
    assert images.max() == pytest.approx(255.0) and images.min() == 0.0
    # Each 8x8 digit lands in the frame whole: same total ink as the original.
    centred, _ = load_digit_frames(8)
    assert images.sum(axis=(1, 2, 3)) == pytest.approx(centred.sum(axis=(1, 2, 3)))
    with pytest.raises(ValueError, match="frame_size"):
        load_digit_frames(4)


# ---------------------------------------------------------------- CLI: help
@pytest.mark.parametrize("command", COMMANDS)
def test_subcommand_help_exits_0(command, capsys):
    assert cli.main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: finetunekit {command}")


def test_top_level_help_and_usage_errors(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert command in out
    assert cli.main([]) == 2  # no command: help on stderr, usage error
    assert "usage: finetunekit" in capsys.readouterr().err
    assert cli.main(["fit", "--data", "x", "--out", "m.keras", "--backbone", "resnet50", "--epochs", "0"]) == 2
    assert "--epochs" in capsys.readouterr().err
    assert cli.main(["predict", "--model", "m.keras"]) == 2  # no images
    assert cli.main(["frobnicate"]) == 2


def test_demo_rejects_too_many_labels(capsys):
    assert cli.main(["demo", "--labels-per-class", "500"]) == 3
    assert "labels_per_class" in capsys.readouterr().err


def test_console_script_entry_point():
    from importlib.metadata import entry_points

    (entry,) = [e for e in entry_points(group="console_scripts") if e.name == "finetunekit"]
    assert entry.value == "finetunekit.cli:main"
    assert entry.load() is cli.main


# ------------------------------------------------------ CLI: fit and friends
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny folder and a model fitted on it with `finetunekit fit` (in-process)."""
    root = tmp_path_factory.mktemp("cli")
    data = write_images(str(root / "photos"), {"cat": 6, "dog": 6}, size=(20, 20))
    model = root / "out" / "pets.keras"
    code = cli.main(
        [
            "fit",
            "--backbone", "mobilenetv2",
            "--weights", "none",
            "--image-size", "32",
            "--epochs", "1",
            "--data", data,
            "--out", str(model),
            "--seed", "0",
            "--quiet",
        ]
    )  # fmt: skip
    assert code == 0
    assert model.is_file()
    return data, str(model)


def test_fit_fine_tune_stages_with_a_keras_file_backbone(tmp_path, capsys):
    from tests.conftest import tiny_cnn

    backbone = tmp_path / "tiny.keras"
    tiny_cnn().save(backbone)
    data = write_images(str(tmp_path / "photos"), {"a": 4, "b": 4, "c": 4}, size=(12, 12))
    out = tmp_path / "model.keras"
    args = ["fit", "--backbone", backbone, "--data", data, "--out", out, "--epochs", "3",
            "--freeze-epochs", "1", "--unfreeze", "2", "--preprocessing", "zero_one",
            "--validation-split", "0.25", "--seed", "0"]  # fmt: skip
    assert cli.main([str(a) for a in args]) == 0
    printed = capsys.readouterr().out
    assert "9 training and 3 validation images" in printed
    assert "Epoch 3/3" in printed and "val_accuracy" in printed
    import finetunekit as fk

    model = fk.load(str(out))
    assert model.class_names == ["a", "b", "c"]
    assert model.unfreeze == 2 and model.backbone_kind.preprocessing == "zero_one"


def test_fit_then_predict_in_a_fresh_process(trained):
    data, model = trained
    images = [os.path.join(data, "cat", "0.jpg"), os.path.join(data, "dog")]
    done = _run_module("predict", "--model", model, *images, "--json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert len(rows) == 1 + 6  # one file plus the six images of the dog folder
    assert rows[0]["path"] == images[0]
    for row in rows:
        assert row["label"] in ("cat", "dog")
        assert set(row["probabilities"]) == {"cat", "dog"}
        assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        assert row["probability"] == pytest.approx(max(row["probabilities"].values()))


def test_predict_prints_path_and_label(trained, capsys):
    data, model = trained
    paths = [os.path.join(data, "cat", f"{i}.{'png' if i % 2 else 'jpg'}") for i in range(3)]
    assert cli.main(["predict", "--model", model, *paths]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    for path, line in zip(paths, lines, strict=True):
        got_path, label, probability = line.split("\t")
        assert got_path == path and label in ("cat", "dog")
        assert 0.5 <= float(probability) <= 1.0


def test_evaluate(trained, capsys):
    data, model = trained
    assert cli.main(["evaluate", "--model", model, "--data", data, "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert metrics["loss"] > 0


def test_evaluate_report_and_export(trained, capsys, tmp_path):
    import numpy as np
    import tensorflow as tf
    from PIL import Image

    data, model = trained
    assert cli.main(["evaluate", "--model", model, "--data", data, "--report", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert 0.0 <= report["metrics"]["accuracy"] <= 1.0
    out = str(tmp_path / "exported")
    assert cli.main(["export", "--model", model, "--out", out]) == 0
    assert "Exported saved_model" in capsys.readouterr().out
    image_path = next(
        os.path.join(root, f) for root, _, files in os.walk(data) for f in files
    )
    image = np.asarray(Image.open(image_path).convert("RGB"), "float32")[None]
    served = tf.saved_model.load(out)
    exported = served.serve(tf.constant(image)).numpy()
    expected = cli_commands.library().load(model).predict(image, verbose=0)
    np.testing.assert_allclose(exported, expected, atol=1e-5)


# --------------------------------------------------------- CLI: bad input
def test_bad_input_in_a_fresh_process_exits_3(tmp_path):
    done = _run_module(
        "fit", "--backbone", "mobilenetv2", "--weights", "none",
        "--data", tmp_path / "missing", "--out", tmp_path / "m.keras",
    )  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert "error: Image folder not found" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["fit", "--backbone", "mobilenetv2", "--data", "{missing}", "--out", "{out}"],
         "Image folder not found"),
        (["fit", "--backbone", "resnet5O", "--weights", "none", "--data", "{data}", "--out", "{out}"],
         'Unknown backbone "resnet5O". Did you mean "ResNet50"'),
        (["fit", "--backbone", "mobilenetv2", "--data", "{data}", "--out", "model.h5"],
         '--out must be a ".keras" file'),
        (["fit", "--backbone", "mobilenetv2", "--data", "{data}", "--out", "{out}",
          "--weights", "{missing}.weights.h5"], "file not found"),
        (["fit", "--backbone", "mobilenetv2", "--data", "{data}", "--out", "{out}",
          "--augment", "{{rotation"], "--augment is not valid JSON"),
        (["fit", "--backbone", "mobilenetv2", "--data", "{one_class}", "--out", "{out}"],
         "at least two"),
        (["predict", "--model", "{missing}.keras", "{data}/cat/0.jpg"], "No saved model"),
        (["predict", "--model", "{model}", "{missing}.jpg"], "No such image file or folder"),
        (["evaluate", "--model", "{model}", "--data", "{missing}"], "No such image file or folder"),
        (["evaluate", "--model", "{model}", "--data", "{other_classes}"],
         "are not among the known classes"),
    ],
)  # fmt: skip
def test_bad_input_exits_3_with_message(args, message, trained, tmp_path, capsys):
    data, model = trained
    places = {
        "data": data,
        "model": model,
        "missing": str(tmp_path / "missing"),
        "out": str(tmp_path / "m.keras"),
        "one_class": write_images(str(tmp_path / "one"), {"cat": 2}),
        "other_classes": write_images(str(tmp_path / "other"), {"cow": 2, "pig": 2}),
    }
    assert cli.main([a.format(**places) for a in args]) == 3
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert "Traceback" not in err
    assert not os.path.exists(places["out"])


def test_unexpected_error_exits_1(trained, capsys, monkeypatch):
    def broken(args):
        raise RuntimeError("boom")

    monkeypatch.setattr(cli_predict, "run_predict", broken)
    assert cli.main(["predict", "--model", trained[1], "x.jpg"]) == 1
    err = capsys.readouterr().err
    assert "RuntimeError: boom" in err and "unexpected" in err
