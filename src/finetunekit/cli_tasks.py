"""`finetunekit fit --task ...`: segmentation, detection and translation from the shell.

Each task names its head and the data it reads, as in Python; `FineTuner`
does the rest. Image classification keeps its folder-of-classes path in
`cli_commands.run_fit`. `evaluate` and `predict` need no task option: a saved
model knows its head.

| task | --data | head |
| --- | --- | --- |
| segmentation | a folder of images, with `--masks` a folder of PNG masks | `SegmentationHead` |
| detection | a COCO json, a Pascal VOC folder or a YOLO folder | `DetectionHead` |
| seq2seq | a CSV/TSV/JSONL file of (source, target) pairs | `Seq2SeqHead` |
"""

import os

import numpy as np

from finetunekit.cli_args import positive_int
from finetunekit.cli_commands import (
    CLIError,
    build_finetuner,
    library,
    parse_augment,
    parse_weights,
    save_trained,
    train,
)

TASKS = ("classification", "segmentation", "detection", "seq2seq")
IMAGE_TASKS = ("segmentation", "detection")


def add_task_options(fit):
    """The `--task` option of `fit` and the options of its tasks."""
    fit.add_argument(
        "--task",
        choices=TASKS,
        default="classification",
        help="what to learn: classification (--data: one sub-folder per class), segmentation "
        "(--data images/ --masks masks/), detection (--data a COCO json, VOC or YOLO folder) "
        "or seq2seq (--data a CSV/TSV/JSONL of source, target pairs; --backbone a Seq2SeqLM "
        "preset or folder)",
    )
    fit.add_argument(
        "--masks",
        default=None,
        help="segmentation: folder of PNG masks named like the images (class id per pixel)",
    )
    fit.add_argument(
        "--num-classes",
        type=positive_int,
        default=None,
        help="segmentation and detection: number of classes (default: read from the data)",
    )
    fit.add_argument(
        "--decoder", choices=("unet", "fpn"), default="unet", help="segmentation decoder"
    )
    fit.add_argument(
        "--max-target-length",
        type=positive_int,
        default=64,
        help="seq2seq: longest target in tokens (longer targets are an error)",
    )


def check_task_options(args):
    """Task options given to the wrong task fail before any data is read."""
    task = getattr(args, "task", "classification")
    if task == "segmentation" and args.masks is None:
        raise CLIError(
            "--task segmentation needs --masks: a folder of PNG masks named like the images in "
            "--data (cat_01.jpg -> cat_01.png), one class id per pixel."
        )
    if task != "segmentation" and args.masks is not None:
        raise CLIError(f"--masks applies to --task segmentation only (this is --task {task}).")
    if task in ("classification", "seq2seq") and args.num_classes is not None:
        raise CLIError(
            f"--num-classes applies to --task segmentation and detection; with --task {task} "
            "it comes from the data."
        )
    if task != "classification" and not os.path.exists(args.data):
        raise FileNotFoundError(f"--data: no such file or folder: {args.data!r}")
    if task == "seq2seq" and args.augment not in (None, "none"):
        raise CLIError("--augment applies to image tasks; --task seq2seq takes none.")


# ------------------------------------------------------------------- data
def _segmentation_data(fk, args):
    from finetunekit.data.masks import read_mask_data

    if not os.path.isdir(args.data):
        raise CLIError(
            f"--data {args.data!r} is not a folder. --task segmentation takes a folder of "
            "images (no class sub-folders) and --masks a folder of PNG masks."
        )
    images, masks = read_mask_data(args.data, args.masks)
    highest = max(int(np.max(mask)) for mask in masks)
    num_classes = args.num_classes or highest + 1
    head = fk.SegmentationHead(num_classes=num_classes, decoder=args.decoder)
    return images, masks, head, None, f"{num_classes} classes"


def _detection_data(fk, args):
    from finetunekit.data.detection_readers import dataset_layout, read_detection_data

    if dataset_layout(args.data) is None:  # a plain image folder reads as images to predict on
        raise CLIError(
            f"--data {args.data!r} is not detection data. --task detection takes a COCO json, "
            "a Pascal VOC folder (Annotations/ + JPEGImages/) or a YOLO folder (images/ + labels/)."
        )
    images, targets = read_detection_data(args.data, None)
    labels = [label for target in targets for label in np.asarray(target["labels"]).tolist()]
    names = sorted({str(label) for label in labels}) if any(
        isinstance(label, str) for label in labels
    ) else None
    found = len(names) if names else max(labels, default=-1) + 1
    num_classes = args.num_classes or found
    if found > num_classes or num_classes < 1:
        raise CLIError(
            f"--num-classes {num_classes} is fewer than the {found} classes in {args.data!r}."
        )
    head = fk.DetectionHead(num_classes=num_classes)
    return images, targets, head, names, f"{num_classes} classes"


def _seq2seq_data(fk, args):
    from finetunekit.data.seq2seq_pipeline import read_pairs

    if os.path.isdir(args.data):
        raise CLIError(
            f"--data {args.data!r} is a folder. --task seq2seq takes a CSV/TSV/JSONL file of "
            "pairs (columns source and target, or the first two columns)."
        )
    sources, targets = read_pairs(args.data)
    head = fk.Seq2SeqHead(max_target_length=args.max_target_length)
    return sources, targets, head, None, f"targets up to {args.max_target_length} tokens"


READERS = {
    "segmentation": _segmentation_data,
    "detection": _detection_data,
    "seq2seq": _seq2seq_data,
}


# ------------------------------------------------------------------ train
def _build(fk, args, head, class_names):
    options = {"class_names": class_names}
    if args.task in IMAGE_TASKS:
        size = args.image_size
        options.update(
            input_shape=None if size is None else (size, size, 3),
            augment=parse_augment(args.augment),
            preprocessing=args.preprocessing,
        )
    return build_finetuner(fk, args, head, parse_weights(args.weights), **options)


def run_task_fit(args):
    """`finetunekit fit --task segmentation|detection|seq2seq`."""
    check_task_options(args)
    fk = library()
    x, y, head, class_names, what = READERS[args.task](fk, args)
    model = _build(fk, args, head, class_names)
    print(
        f"Training {args.task} on {args.backbone}: {len(x)} examples, {what}, "
        f"validation split {args.validation_split}, unfreeze={args.unfreeze}",
        flush=True,
    )
    image_options = {"on_bad_image": args.on_bad_image} if args.task in IMAGE_TASKS else {}
    history = train(model, x, y, args, validation_split=args.validation_split, **image_options)
    return save_trained(model, history, args)


# --------------------------------------------------------------- evaluate
def task_of(model):
    """The CLI task of a saved FineTuner's head ("classification" for the others).

    `speech` (a `SpeechToTextHead`) is predicted from the command line; `fit`
    and `evaluate` for it are Python-only.
    """
    head = type(model.head).__name__
    return {
        "SegmentationHead": "segmentation",
        "DetectionHead": "detection",
        "Seq2SeqHead": "seq2seq",
        "SpeechToTextHead": "speech",
    }.get(head, "classification")


def evaluation_data(model, args):
    """`(x, y, count)` for `evaluate` of a task model, read as `fit --task` reads them."""
    task = task_of(model)
    masks = getattr(args, "masks", None)
    if task != "segmentation" and masks is not None:
        raise CLIError("--masks applies to segmentation models only.")
    if task == "segmentation":
        if masks is None:
            raise CLIError(
                f"{args.model!r} is a segmentation model: pass --masks, the folder of PNG masks "
                "of the images in --data."
            )
    if task in IMAGE_TASKS:  # the spatial head reads its own files, as in fit
        x, y = model.head.read_data(args.data, masks)
    else:
        from finetunekit.data.seq2seq_pipeline import read_pairs

        x, y = read_pairs(args.data)
    if y is None:
        raise CLIError(f"--data {args.data!r} has no {task} targets to score against.")
    return x, y, len(x)
