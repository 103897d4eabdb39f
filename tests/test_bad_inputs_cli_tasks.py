"""The bad-input catalogue of `finetunekit fit --task ...` and of task models at evaluate/predict.

One row per case: `(id, argv, exit_code, pattern)`; `argv` is formatted with
the paths of the `places` fixture and run through `finetunekit.cli.main`;
`pattern` must match stderr. The same rows are in docs/errors.md ("Command
line: tasks").
"""

import os
import re

import pytest

from finetunekit import cli
from tests.catalogue import undocumented
from tests.test_cli_tasks import write_task_data

FIT = ["--epochs", "1", "--validation-split", "0", "--quiet"]

# fmt: off
CASES = [
    ("segmentation_without_masks", ["fit", "--task", "segmentation", "--backbone", "{backbone}", "--data", "{images}", "--out", "{out}"], 3,
     r"--task segmentation needs --masks: a folder of PNG masks named like the images in --data"),
    ("masks_without_segmentation", ["fit", "--backbone", "{backbone}", "--data", "{classes}", "--masks", "{masks}", "--out", "{out}"], 3,
     r"--masks applies to --task segmentation only \(this is --task classification\)"),
    ("num_classes_for_seq2seq", ["fit", "--task", "seq2seq", "--backbone", "bart_base_en", "--data", "{pairs}", "--num-classes", "3", "--out", "{out}"], 3,
     r"--num-classes applies to --task segmentation and detection; with --task seq2seq it comes from the data"),
    ("task_data_missing", ["fit", "--task", "detection", "--backbone", "{backbone}", "--data", "{root}/nothing.json", "--out", "{out}"], 3,
     r"--data: no such file or folder: '.*nothing\.json'"),
    ("segmentation_data_is_a_file", ["fit", "--task", "segmentation", "--backbone", "{backbone}", "--data", "{images}/0.png", "--masks", "{masks}", "--out", "{out}"], 3,
     r"--data '.*0\.png' is not a folder\. --task segmentation takes a folder of images .*and --masks a folder of PNG masks"),
    ("segmentation_masks_unpaired", ["fit", "--task", "segmentation", "--backbone", "{backbone}", "--data", "{images}", "--masks", "{few_masks}", "--out", "{out}"], 3,
     r"do not pair up: 4 image\(s\) have no mask .*Each image needs a PNG mask with the same name"),
    ("not_detection_data", ["fit", "--task", "detection", "--backbone", "{backbone}", "--data", "{classes}", "--out", "{out}"], 3,
     r"is not detection data\. --task detection takes a COCO json, a Pascal VOC folder .* or a YOLO folder"),
    ("fewer_classes_than_the_data", ["fit", "--task", "detection", "--backbone", "{backbone}", "--data", "{coco}", "--num-classes", "1", "--out", "{out}"], 3,
     r"--num-classes 1 is fewer than the 2 classes in '.*coco\.json'"),
    ("seq2seq_data_is_a_folder", ["fit", "--task", "seq2seq", "--backbone", "bart_base_en", "--data", "{root}", "--out", "{out}"], 3,
     r"is a folder\. --task seq2seq takes a CSV/TSV/JSONL file of pairs"),
    ("seq2seq_with_augment", ["fit", "--task", "seq2seq", "--backbone", "bart_base_en", "--data", "{pairs}", "--augment", "default", "--out", "{out}"], 3,
     r"--augment applies to image tasks; --task seq2seq takes none"),
    ("evaluate_segmentation_without_masks", ["evaluate", "--model", "{seg_model}", "--data", "{images}"], 3,
     r"is a segmentation model: pass --masks, the folder of PNG masks of the images in --data"),
    ("evaluate_masks_for_a_classifier", ["evaluate", "--model", "{class_model}", "--data", "{classes}", "--masks", "{masks}"], 3,
     r"--masks applies to segmentation models only"),
    ("predict_segmentation_without_out", ["predict", "--model", "{seg_model}", "{images}"], 3,
     r"is a segmentation model: pass --out FOLDER for its masks \(one PNG of class ids per image"),
    ("predict_masks_out_is_a_file", ["predict", "--model", "{seg_model}", "{images}", "--out", "{seg_model}"], 3,
     r"--out '.*seg\.keras' is a file; masks are written into a folder"),
    ("predict_out_for_a_classifier", ["predict", "--model", "{class_model}", "{images}", "--out", "{root}/masks_out"], 3,
     r"--out applies to segmentation models \(it writes masks\); this is classification"),
]
# fmt: on


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    """Task data, a tiny segmentation model and a tiny image classifier."""
    from tests.conftest import tiny_tuner, write_images
    from tests.test_segmentation import pyramid_cnn

    root = str(tmp_path_factory.mktemp("cli_task_bad"))
    images, masks, coco = write_task_data(root)
    few_masks = os.path.join(root, "few_masks")
    os.makedirs(few_masks)
    for name in ("0.png", "1.png"):
        os.link(os.path.join(masks, name), os.path.join(few_masks, name))
    backbone = os.path.join(root, "pyramid.keras")
    pyramid_cnn(16).save(backbone)
    seg_model = os.path.join(root, "seg.keras")
    argv = ["fit", "--task", "segmentation", "--backbone", backbone, "--preprocessing", "zero_one",
            "--data", images, "--masks", masks, "--out", seg_model, *FIT]  # fmt: skip
    assert cli.main(argv) == 0
    classes = write_images(os.path.join(root, "classes"), {"cat": 4, "dog": 4}, size=(16, 16))
    class_model = os.path.join(root, "classes.keras")
    tiny_tuner().save(class_model)
    pairs = os.path.join(root, "pairs.tsv")
    with open(pairs, "w", encoding="utf-8") as f:
        f.write("source\ttarget\nthe cat\tel gato\n")
    return {"root": root, "images": images, "masks": masks, "coco": coco, "few_masks": few_masks,
            "backbone": backbone, "seg_model": seg_model, "classes": classes,
            "class_model": class_model, "pairs": pairs}  # fmt: skip


@pytest.mark.parametrize("case_id,argv,exit_code,pattern", CASES, ids=[c[0] for c in CASES])
def test_cli_task_bad_input(case_id, argv, exit_code, pattern, places, tmp_path, capsys):
    out = str(tmp_path / "model.keras")
    code = cli.main([a.format(out=out, **places) for a in argv])
    captured = capsys.readouterr()
    assert code == exit_code, captured.out[-2000:] + captured.err[-2000:]
    assert re.search(pattern, captured.err), captured.err[-3000:]
    assert "Traceback" not in captured.err
    assert not os.path.exists(out)  # a failed run saves nothing


def test_cli_task_catalogue_is_documented():
    assert undocumented([c[0] for c in CASES], "Command line: tasks") == []
