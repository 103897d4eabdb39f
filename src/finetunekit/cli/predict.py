"""`finetunekit predict`: labels for image files and folders, or for texts (answers of chat models).

An image model takes image files and folders (searched for images, listed in
natural order: `dog/2.jpg` before `dog/10.jpg`); a text model takes the texts
themselves. Each refuses the other kind of input with a message.
"""

import json
import os

from finetunekit.cli.commands import (
    EXIT_OK,
    CLIError,
    image_extensions,
    is_text_model,
    load_finetuner,
    natural_key,
)


def _is_readable_image(path):
    from PIL import Image

    try:
        with Image.open(path):
            return True
    except Exception:
        return False


def _file_inputs(model_path, items, kind="image"):
    """Files, and the files in folders (natural order), for an image or audio model."""
    if kind == "audio":
        from finetunekit.families.speech.readers import AUDIO_EXTENSIONS as extensions
    else:
        extensions = image_extensions()
    article = "an" if kind[0] in "aeiou" else "a"
    plural = "images" if kind == "image" else f"{kind} files"
    paths = []
    for item in items:
        if os.path.isdir(item):
            found = [
                os.path.join(root, name)
                for root, _, files in os.walk(item)
                for name in files
                if name.lower().endswith(extensions) and not name.startswith(".")
            ]
            if not found:
                raise CLIError(f"No {kind} files found in the folder {item!r}.")
            paths += sorted(found, key=natural_key)
        elif os.path.isfile(item):
            readable = kind == "image" and _is_readable_image(item)
            if not item.lower().endswith(extensions) and not readable:
                raise CLIError(
                    f"{item!r} is not {article} {kind} file, but {model_path!r} is {article} {kind} "
                    f"model: pass {kind} files ({', '.join(extensions)}) or folders of {plural}."
                )
            paths.append(item)
        else:
            raise FileNotFoundError(
                f"No such {kind} file or folder: {item!r}. {model_path!r} is {article} {kind} "
                f"model: pass {kind} files or folders of {plural}, not text."
            )
    return paths


def _text_inputs(model_path, items):
    """The texts themselves, for a text model; image files and folders are refused."""
    extensions = image_extensions()
    for item in items:
        if os.path.isdir(item) or item.lower().endswith(extensions):
            what = "a folder" if os.path.isdir(item) else "an image file"
            raise CLIError(
                f"{model_path!r} is a text model, but {item!r} is {what}. Pass the texts "
                f'themselves, e.g. finetunekit predict --model {model_path} "a great film", '
                "and use an image model for images."
            )
    return list(items)


def _prediction_rows(model, inputs, outputs, key):
    labels = model.head.decode(outputs, model.class_names)
    single_label = getattr(model.head, "num_classes", None) and not getattr(
        model.head, "multi_label", False
    )
    rows = []
    for item, label, output in zip(inputs, labels, outputs, strict=True):
        row = {key: item, "label": plain(label)}
        if single_label:
            row["probability"] = float(output.max())
            names = model.class_names or [str(i) for i in range(len(output))]
            row["probabilities"] = {str(n): float(p) for n, p in zip(names, output, strict=True)}
        rows.append(row)
    return rows


def _model_path(args):
    """`--model`, or the first INPUT when it is a .keras file (`predict model.keras "a prompt"`)."""
    if args.model is None and args.images and args.images[0].endswith(".keras"):
        args.model = args.images.pop(0)
    if args.model is None:
        raise CLIError(
            'Name the model: finetunekit predict model.keras INPUT ... (or --model model.keras).'
        )
    return args.model


def _check_inputs(args, task):
    """Chat-only options are refused for other models; the inputs must be given."""
    chat_only = [option for option, value in (
        ("--max-new-tokens", args.max_new_tokens), ("--strategy", args.strategy),
        ("--data", args.data)) if value is not None]  # fmt: skip
    if chat_only:
        raise CLIError(f"{', '.join(chat_only)} applies to chat models only; this is {task}.")
    if not args.images:
        raise CLIError(f"Give the inputs to label with {args.model!r}: files, folders or texts.")


def run_predict(args):
    model = load_finetuner(_model_path(args), compile=False)
    from finetunekit.cli.commands import task_of

    task = task_of(model)
    if task == "chat":
        from finetunekit.cli.chat import run_chat_predict

        return run_chat_predict(model, args)
    _check_inputs(args, task)
    text = is_text_model(model)
    modality = getattr(model.backbone_kind, "modality", "image")
    if text:
        inputs = _text_inputs(args.model, args.images)
    else:
        inputs = _file_inputs(args.model, args.images, "audio" if modality == "audio" else "image")
    if task != "classification" or getattr(args, "out", None) is not None:
        return run_task_predict(model, task, inputs, args)
    outputs = model.predict(inputs, batch_size=args.batch_size, verbose=0)
    key = "text" if text else "path"
    rows = _prediction_rows(model, inputs, outputs, key)
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    for row in rows:
        label = row["label"]
        if isinstance(label, list):
            label = ",".join(map(str, label))
        line = f"{row[key]}\t{label}"
        if "probability" in row:
            line += f"\t{row['probability']:.4f}"
        print(line)
    return EXIT_OK


def run_task_predict(model, task, items, args):
    """Prints translations or boxes, or writes masks, for a seq2seq/detection/segmentation model."""
    if task != "segmentation" and args.out is not None:
        raise CLIError(f"--out applies to segmentation models (it writes masks); this is {task}.")
    if task in ("seq2seq", "speech"):
        key = "text" if task == "seq2seq" else "path"
        found = model.predict_text(items, batch_size=args.batch_size)
        rows = [{key: item, "prediction": text} for item, text in zip(items, found)]
        lines = [f"{row[key]}\t{row['prediction']}" for row in rows]
    elif task == "detection":
        found = model.predict_boxes(items, batch_size=args.batch_size)
        rows = [{"path": path, **{k: plain(v) for k, v in f.items()}} for path, f in zip(items, found)]
        lines = [_box_line(row) for row in rows]
    else:
        rows = _write_masks(model, items, args)
        lines = [f"{row['path']}\t{row['mask']}" for row in rows]
    print(json.dumps(rows, indent=2) if args.json else "\n".join(lines))
    return EXIT_OK


def _box_line(row):
    boxes = [
        f"{label} {score:.3f} " + ",".join(f"{v:.1f}" for v in box)
        for box, score, label in zip(row["boxes"], row["scores"], row["labels"])
    ]
    return f"{row['path']}\t" + ("; ".join(boxes) if boxes else "(none)")


def check_out_folder(folder):
    """`--out FOLDER` of masks: created now, and writable, before any prediction runs."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise CLIError(f"--out {folder!r} is a file; masks are written into a folder.")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:
        raise CLIError(f"--out {folder!r} cannot be created: {error.strerror}.") from None
    if not os.access(folder, os.W_OK):
        raise CLIError(f"--out {folder!r} is not writable: choose another folder.")


def _write_masks(model, items, args):
    """One PNG of class ids per image, named like the image, in `--out` (atomic writes)."""
    if args.out is None:
        raise CLIError(
            f"{args.model!r} is a segmentation model: pass --out FOLDER for its masks (one PNG "
            "of class ids per image, named like the image)."
        )
    import io

    import numpy as np
    from PIL import Image

    from finetunekit.core.files import atomic_write_bytes

    check_out_folder(args.out)
    masks = model.predict_masks(items, batch_size=args.batch_size)
    rows = []
    for path, mask in zip(items, masks):
        target = os.path.join(args.out, os.path.splitext(os.path.basename(path))[0] + ".png")
        buffer = io.BytesIO()
        Image.fromarray(np.asarray(mask).astype("uint8")).save(buffer, format="PNG")
        atomic_write_bytes(target, buffer.getvalue())
        rows.append({"path": path, "mask": target})
    return rows


def plain(value):
    """Makes a decoded label JSON-friendly (numpy scalars and arrays to Python)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value
