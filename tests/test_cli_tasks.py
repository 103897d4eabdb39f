"""`finetunekit fit --task segmentation|detection|seq2seq`, then evaluate and predict.

Each task runs the whole command-line cycle in-process on tiny generated
data: fit saves a model, evaluate scores it (with `--report --json`), and
predict writes masks, prints boxes or prints translations.
"""

import json
import os

import numpy as np
import pytest
from PIL import Image

from finetunekit import cli


def write_task_data(root, count=6, size=16):
    """Images with one bright square each, their PNG masks and a COCO json of the squares."""
    rng = np.random.default_rng(0)
    images, masks = os.path.join(root, "images"), os.path.join(root, "masks")
    os.makedirs(images)
    os.makedirs(masks)
    coco = {"images": [], "annotations": [],
            "categories": [{"id": 1, "name": "square"}, {"id": 2, "name": "bar"}]}  # fmt: skip
    for i in range(count):
        image = (rng.random((size, size, 3)) * 60).astype("uint8")
        mask = np.zeros((size, size), "uint8")
        top, left = rng.integers(0, size // 2, 2)
        image[top:top + size // 2, left:left + size // 2] = 220
        mask[top:top + size // 2, left:left + size // 2] = 1
        Image.fromarray(image).save(os.path.join(images, f"{i}.png"))
        Image.fromarray(mask).save(os.path.join(masks, f"{i}.png"))
        coco["images"].append({"id": i, "file_name": f"{i}.png", "width": size, "height": size})
        coco["annotations"].append({"id": i, "image_id": i, "category_id": 1 + i % 2,
                                    "bbox": [float(left), float(top), size / 2, size / 2]})  # fmt: skip
    annotations = os.path.join(images, "coco.json")
    with open(annotations, "w", encoding="utf-8") as f:
        json.dump(coco, f)
    return images, masks, annotations


def write_pairs(path, count=8):
    from tests.test_seq2seq import pairs

    sources, targets = pairs(count)
    with open(path, "w", encoding="utf-8") as f:
        f.write("source\ttarget\n" + "".join(f"{s}\t{t}\n" for s, t in zip(sources, targets)))
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from tests.test_segmentation import pyramid_cnn

    root = str(tmp_path_factory.mktemp("cli_tasks"))
    images, masks, annotations = write_task_data(root)
    backbone = os.path.join(root, "pyramid.keras")
    pyramid_cnn(16).save(backbone)
    return {"root": root, "images": images, "masks": masks, "coco": annotations,
            "backbone": backbone}  # fmt: skip


def _main(argv, capsys):
    code = cli.main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.out[-2000:] + captured.err[-3000:]
    return captured.out


FIT = ["--epochs", "1", "--validation-split", "0", "--batch-size", "4", "--seed", "0", "--quiet"]


def test_segmentation_from_the_command_line(data, tmp_path, capsys):
    model = str(tmp_path / "seg.keras")
    out = _main(["fit", "--task", "segmentation", "--backbone", data["backbone"],
                 "--preprocessing", "zero_one", "--data", data["images"], "--masks",
                 data["masks"], "--out", model, *FIT], capsys)  # fmt: skip
    assert "Training segmentation" in out and "2 classes" in out and os.path.exists(model)
    out = _main(["evaluate", "--model", model, "--data", data["images"], "--masks", data["masks"]],
                capsys)
    assert out.startswith(f"Scored 6 examples from {data['images']}") and "mean_iou: " in out
    report = json.loads(_main(["evaluate", "--model", model, "--data", data["images"], "--masks",
                               data["masks"], "--report", "--json"], capsys))  # fmt: skip
    assert set(report["metrics"]) >= {"mean_iou", "pixel_accuracy", "mean_dice"}
    wide = tmp_path / "new"
    wide.mkdir()
    Image.open(os.path.join(data["images"], "0.png")).resize((24, 20)).save(wide / "wide.jpg")
    out = _main(["predict", "--model", model, str(wide), "--out", str(tmp_path / "masks")], capsys)
    written = str(tmp_path / "masks" / "wide.png")
    assert out.strip() == f"{wide / 'wide.jpg'}\t{written}"
    mask = np.asarray(Image.open(written))
    assert mask.shape == (20, 24) and set(np.unique(mask)) <= {0, 1}  # the input's own size


def test_detection_from_the_command_line(data, tmp_path, capsys):
    model = str(tmp_path / "det.keras")
    out = _main(["fit", "--task", "detection", "--backbone", data["backbone"],
                 "--preprocessing", "zero_one", "--data", data["coco"], "--out", model, *FIT],
                capsys)  # fmt: skip
    assert "6 examples, 2 classes" in out
    report = json.loads(_main(["evaluate", "--model", model, "--data", data["coco"], "--report",
                               "--json"], capsys))  # fmt: skip
    assert {"map", "map_50"} <= set(report["metrics"])
    rows = json.loads(_main(["predict", "--model", model, "--json", data["images"]], capsys))
    assert [os.path.basename(r["path"]) for r in rows] == [f"{i}.png" for i in range(6)]
    for row in rows:
        assert len(row["boxes"]) == len(row["scores"]) == len(row["labels"])
        assert set(row["labels"]) <= {"bar", "square"}


def test_seq2seq_from_the_command_line(tmp_path, capsys):
    import keras_hub

    from tests.test_seq2seq import tiny_bart

    backbone, preprocessor = tiny_bart()
    preset = str(tmp_path / "bart_tiny")
    keras_hub.models.BartSeq2SeqLM(backbone=backbone, preprocessor=preprocessor).save_to_preset(
        preset
    )
    table = write_pairs(str(tmp_path / "pairs.tsv"))
    model = str(tmp_path / "mt.keras")
    out = _main(["fit", "--task", "seq2seq", "--backbone", preset, "--data", table,
                 "--unfreeze", "all", "--max-target-length", "8", "--out", model, *FIT], capsys)  # fmt: skip
    assert "8 examples, targets up to 8 tokens" in out
    report = json.loads(_main(["evaluate", "--model", model, "--data", table, "--report", "--json"],
                              capsys))  # fmt: skip
    assert {"bleu", "chrf"} <= set(report["metrics"])
    out = _main(["predict", "--model", model, "red cat", "a dog"], capsys)
    lines = out.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["red cat", "a dog"]


def test_audio_models_from_the_command_line(tmp_path, capsys):
    """A saved keyword classifier labels .wav files; a speech-to-text model transcribes them."""
    import finetunekit as fk
    from tests.audio_fixtures import tiny_tokenizer, tiny_whisper, tone, write_wav

    for label, frequency in (("high", 2000), ("low", 300)):
        for i in range(2):
            write_wav(str(tmp_path / "kws" / label / f"{i}.wav"), tone(frequency, seed=i))
    kws = fk.FineTuner(backbone=tiny_whisper(), head=fk.ClassificationHead(2, pooling="mean"))
    kws.fit(str(tmp_path / "kws"), epochs=1, batch_size=4, verbose=0)
    kws.save(tmp_path / "kws.keras")
    out = _main(["evaluate", "--model", str(tmp_path / "kws.keras"), "--data",
                 str(tmp_path / "kws")], capsys)  # fmt: skip
    assert out.startswith(f"Scored 4 examples from {tmp_path / 'kws'}")
    out = _main(["predict", "--model", str(tmp_path / "kws.keras"), str(tmp_path / "kws" / "low")],
                capsys)
    assert [line.split("\t")[1] in ("high", "low") for line in out.splitlines()] == [True, True]
    asr = fk.FineTuner(backbone=tiny_whisper(), preprocessor=tiny_tokenizer(),
                       head=fk.SpeechToTextHead(max_new_tokens=3))  # fmt: skip
    asr.save(tmp_path / "asr.keras")
    clip = str(tmp_path / "kws" / "high" / "0.wav")
    rows = json.loads(_main(["predict", "--model", str(tmp_path / "asr.keras"), clip, "--json"],
                            capsys))  # fmt: skip
    assert rows == [{"path": clip, "prediction": asr.predict_text([clip])[0]}]
    code = cli.main(["predict", "--model", str(tmp_path / "asr.keras"), str(tmp_path / "kws.keras")])
    assert code == 3
    assert "is not an audio file, but" in capsys.readouterr().err


def test_the_task_table_is_the_registry_of_head_tasks():
    """Every `cli_task` a registered head declares is fitted from the shell or declared Python-only."""
    from finetunekit.cli.commands import PYTHON_ONLY_TASKS, TASKS, task_of
    from finetunekit.core.family import head_classes

    declared = {head.cli_task for head in head_classes().values() if head.cli_task}
    assert declared == (set(TASKS) - {"classification"}) | set(PYTHON_ONLY_TASKS)
    tuner = type("Saved", (), {"head": head_classes()["DetectionHead"](num_classes=2)})()
    assert task_of(tuner) == "detection"
    tuner.head = head_classes()["ClassificationHead"](num_classes=2)
    assert task_of(tuner) == "classification"


@pytest.mark.slow  # default-run budget; runs with -m slow
def test_fit_a_text_classifier_from_a_csv_then_evaluate_and_predict(tmp_path, capsys):
    """`fit --backbone <text preset folder> --data reviews.csv`: texts and labels from a table."""
    import pandas as pd

    from tests.test_text import LABELS, TEXTS, tiny_bert

    preset = str(tmp_path / "bert")
    backbone, preprocessor = tiny_bert()
    backbone.save_to_preset(preset)
    preprocessor.save_to_preset(preset)
    data = str(tmp_path / "reviews.csv")
    pd.DataFrame({"text": TEXTS, "label": LABELS}).to_csv(data, index=False)
    out = str(tmp_path / "text.keras")
    argv = ["fit", "--backbone", preset, "--data", data, "--out", out, "--epochs", "1",
            "--unfreeze", "all", "--validation-split", "0", "--quiet"]
    assert cli.main(argv) == 0
    assert "Training" in capsys.readouterr().out and os.path.exists(out)
    assert cli.main(["evaluate", "--model", out, "--data", data]) == 0
    assert "accuracy" in capsys.readouterr().out
    assert cli.main(["predict", "--model", out, TEXTS[0]]) == 0
    assert capsys.readouterr().out.split("\t")[1] in ("negative", "positive")
    refused = cli.main(argv[:-1] + ["--image-size", "64"])
    assert refused == 3 and "--image-size applies to image data" in capsys.readouterr().err


@pytest.mark.slow  # default-run budget; runs with -m slow
def test_segmentation_with_void_pixels_from_the_command_line(data, tmp_path, capsys):
    """Masks with a 255 border: --ignore-index 255 keeps 2 classes (not 256) and saves it."""
    import finetunekit as fk

    void = tmp_path / "void_masks"
    void.mkdir()
    for name in os.listdir(data["masks"]):
        mask = np.asarray(Image.open(os.path.join(data["masks"], name))).copy()
        mask[0, :] = 255
        Image.fromarray(mask).save(void / name)
    model = str(tmp_path / "void.keras")
    out = _main(["fit", "--task", "segmentation", "--backbone", data["backbone"],
                 "--preprocessing", "zero_one", "--data", data["images"], "--masks", str(void),
                 "--ignore-index", "255", "--out", model, *FIT], capsys)  # fmt: skip
    assert "2 classes" in out
    assert fk.load(model).head.ignore_index == 255
    code = cli.main(["fit", "--task", "detection", "--backbone", data["backbone"], "--data",
                     data["coco"], "--ignore-index", "255", "--out", model])
    assert code == 3 and "--ignore-index applies to --task segmentation only" in capsys.readouterr().err
