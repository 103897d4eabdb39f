"""What the `finetunekit` sub-commands do (the parser and `main` are in `finetunekit.cli`).

Each `run_*` function takes the parsed arguments and returns an exit code.
This module imports only the standard library at import time: TensorFlow is
loaded, with its start-up notices hidden, when a command first needs it.
"""

import contextlib
import json
import os
import re

from finetunekit.cli.args import positive_int

EXIT_OK = 0
EXIT_UNEXPECTED = 1
EXIT_USAGE = 2
EXIT_BAD_INPUT = 3


class CLIError(ValueError):
    """A bad command-line value found by the CLI itself (exit code 3)."""


class NoNetworkError(RuntimeError):
    """A download the command needs failed (exit code 2: choose other options)."""


# --------------------------------------------------------------------- quiet
def import_tensorflow_quietly():
    """Imports TensorFlow without its native start-up notices, and quiets its Python logger.

    The notices are filtered as for the library (`core.console`); the command
    line also hides TensorFlow's and absl's Python log lines below ERROR. With
    `TF_CPP_MIN_LOG_LEVEL=0` everything is shown.
    """
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0":
        return
    from finetunekit.core.console import import_tensorflow_quietly as load

    tf = load()
    if tf is None:  # pragma: no cover - another Keras backend
        return
    tf.get_logger().setLevel("ERROR")
    with contextlib.suppress(ImportError):
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)


def library():
    """Returns the `finetunekit` package after a quiet TensorFlow import."""
    import_tensorflow_quietly()
    import finetunekit

    return finetunekit


# ---------------------------------------------------------------- arguments
def image_extensions():
    from finetunekit.core.data.images import IMAGE_EXTENSIONS  # numpy only, no TensorFlow

    return IMAGE_EXTENSIONS


def check_image_folder(path, option="--data"):
    """Fails early, with the fix, when `path` is a file rather than a class folder."""
    if os.path.isfile(path):
        raise CLIError(
            f"{option} {path!r} is a file, not a folder. {option} takes a folder with one "
            "sub-folder per class (photos/cat/1.jpg, photos/dog/2.jpg, ...), or for a text "
            "backbone a .csv/.tsv/.jsonl/.json/.parquet table of texts and labels. To label "
            "single images use 'finetunekit predict --model MODEL.keras IMAGE ...'."
        )


def is_text_table(path):
    """True for `--data` that is a table file of texts and labels (text classification)."""
    from finetunekit.core.data.text_readers import TEXT_FILE_TYPES

    return os.path.isfile(path) and path.lower().endswith(TEXT_FILE_TYPES)


def parse_augment(text):
    if text is None or text.lower() == "none":
        return None
    if text.lower() == "default":
        return "default"
    if text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            raise CLIError(f"--augment is not valid JSON: {error}") from None
    raise CLIError(
        f'--augment must be "none", "default" or a JSON object of keywords. Received: {text!r}'
    )


def parse_weights(text):
    if text.lower() == "none":
        return None
    if text.lower() == "imagenet":
        return "imagenet"
    if not os.path.exists(text):
        raise FileNotFoundError(
            f'--weights: file not found: {text!r}. Use "imagenet", "none" or the path of a '
            '".weights.h5" or ".keras" file.'
        )
    return text


def check_out_path(path, option="--out"):
    """The folder of `path` must exist and be writable: checked before any training."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        what = "is not a folder" if os.path.exists(folder) else "does not exist"
        raise CLIError(
            f"{option} {path!r}: the folder {folder!r} {what}. Create it or choose another "
            "path (checked before training)."
        )
    writable = os.access(folder, os.W_OK) and (not os.path.exists(path) or os.access(path, os.W_OK))
    if not writable:
        raise CLIError(
            f"{option} {path!r} cannot be written: no write permission in {folder!r}. Choose "
            "another path (checked before training)."
        )


def check_fit_options(args):
    if not args.out.endswith(".keras"):
        raise CLIError(f'--out must be a ".keras" file. Received: {args.out!r}')
    folder = os.path.dirname(os.path.abspath(args.out))
    if not os.path.exists(folder):  # fit creates the folder of --out, before training
        try:
            os.makedirs(folder)
        except OSError as error:
            raise CLIError(
                f"--out {args.out!r}: the folder {folder!r} cannot be created ({error.strerror}). "
                "Choose another path (checked before training)."
            ) from None
    check_out_path(args.out)
    if args.freeze_epochs is not None and not 0 <= args.freeze_epochs <= args.epochs:
        raise CLIError(
            f"--freeze-epochs must be between 0 and --epochs ({args.epochs}). "
            f"Received: {args.freeze_epochs}"
        )
    if args.freeze_epochs is not None and args.unfreeze == 0:
        raise CLIError("--freeze-epochs needs --unfreeze N or --unfreeze all.")
    if getattr(args, "task", "classification") == "classification" and not is_text_table(args.data):
        check_image_folder(args.data)


# ------------------------------------------------------------- downloads
def _exception_chain(error):
    seen = []
    while error is not None and error not in seen:
        seen.append(error)
        error = error.__cause__ or error.__context__
    return seen


def download_failure(error):
    """Returns the URL of a failed download behind `error` ('' if unknown), or None.

    Uses the library's own recognition of Keras' download failures
    (`finetunekit.families.image.downloads`), over the whole exception chain.
    """
    from finetunekit.families.image.downloads import FETCH_FAILURE, is_download_failure

    for link in _exception_chain(error):
        match = FETCH_FAILURE.search(str(link))
        if match:
            return match.group(1)
        if is_download_failure(link):
            return ""
    return None


def no_network_message(url):
    """What to do when Keras cannot download the ImageNet weights."""
    from finetunekit.families.image.downloads import keras_models_folder

    cache = keras_models_folder() + os.sep
    name = url.rsplit("/", 1)[-1] if url else ""
    where = f" from {url}" if url else ""
    wanted = f"under the name {name!r}" if name else "under the file name Keras expects"
    return (
        f"--weights imagenet needs a download that failed{where}: no network, or the server "
        "cannot be reached. Use --weights none (random initialisation), --weights "
        "path/to/backbone.weights.h5 (or a .keras file) with local weights, or copy the "
        f"weights file into the Keras cache folder {cache} {wanted} and run again."
    )


# ---------------------------------------------------------------- helpers
def natural_key(path):
    """Sort key that orders embedded numbers by value: dog/2.jpg before dog/10.jpg."""
    parts = re.split(r"(\d+)", path)
    return [int(part) if i % 2 else part.lower() for i, part in enumerate(parts)]


def check_model_path(path):
    if not os.path.exists(path):
        raise FileNotFoundError(f"No saved model at {path!r}.")


def model_argument(args):
    """The model path: `--model`, or the first positional argument (`evaluate model.keras ...`)."""
    given = [p for p in (getattr(args, "model", None), getattr(args, "model_path", None)) if p]
    if len(given) != 1:
        raise CLIError(
            "Name the model once: 'finetunekit evaluate model.keras --data ...' or --model "
            f"model.keras. Received: {given or 'none'}"
        )
    args.model = given[0]
    return args.model


def load_finetuner(path, compile):
    """Loads a saved FineTuner, failing clearly on anything else."""
    check_model_path(path)
    fk = library()
    model = fk.load(path, compile=compile)
    if not isinstance(model, fk.FineTuner):
        raise CLIError(
            f"{path!r} holds a {type(model).__name__}, not a finetunekit FineTuner. Save "
            "models with FineTuner.save or 'finetunekit fit'."
        )
    return model


def is_text_model(model):
    """True for a FineTuner over a text encoder (token inputs, a tokenizer inside)."""
    kind = getattr(model, "backbone_kind", None)
    return getattr(kind, "modality", None) == "text"


def count_examples(model, data):
    """The number of examples `model.evaluate(data)` scores (the CLI says it)."""
    from finetunekit.core.data.tfds import as_tfds

    source = as_tfds(data)
    if source is not None:
        return int(source.load()[0].cardinality())
    if getattr(model.backbone_kind, "modality", None) == "audio":
        from finetunekit.families.speech.readers import folder_files, read_manifest

        return len((folder_files(data) if os.path.isdir(data) else read_manifest(data))[0])
    if not is_text_model(model):
        from finetunekit.core.data.images import list_image_folder

        return len(list_image_folder(data)[0])
    if os.path.isfile(data):
        from finetunekit.core.data.text_readers import read_table

        return len(read_table(data))
    return sum(  # a folder with one sub-folder of .txt files per class
        name.endswith(".txt") and not name.startswith(".")
        for _, _, files in os.walk(data)
        for name in files
    )


# ------------------------------------------------------------------ commands
def run_demo(args):
    import_tensorflow_quietly()
    from finetunekit.cli.demo import run_demo as demo

    result = demo(
        seed=args.seed,
        labels_per_class=args.labels_per_class,
        verbose=0 if (args.quiet or args.json) else 1,
        progress=not args.quiet,  # on stderr, so --json output stays JSON
    )
    if args.json:
        print(json.dumps(result, indent=2))
    elif args.quiet:
        print(
            f"transfer {result['transfer_accuracy']:.3f}  scratch {result['scratch_accuracy']:.3f}"
        )
    return EXIT_OK


def build_finetuner(fk, args, head, weights, **options):
    """`fk.FineTuner` on `--backbone` with `--unfreeze`; a failed ImageNet download says what to do."""
    try:
        return fk.FineTuner(
            backbone=args.backbone, head=head, weights=weights, unfreeze=args.unfreeze, **options
        )
    except Exception as error:
        url = download_failure(error) if weights == "imagenet" else None
        if url is None:
            raise
        raise NoNetworkError(no_network_message(url)) from error


def train(model, x, y, args, **options):
    """`fine_tune` (with `--freeze-epochs`) or `compile` + `fit`, with the shared options."""
    options.update(batch_size=args.batch_size, seed=args.seed, verbose=0 if args.quiet else 2)
    if args.freeze_epochs is not None:
        return model.fine_tune(
            x, y, epochs=args.epochs, freeze_epochs=args.freeze_epochs, unfreeze=args.unfreeze,
            learning_rate=args.learning_rate or 1e-3, **options,
        )  # fmt: skip
    model.compile(learning_rate=args.learning_rate)
    return model.fit(x, y, epochs=args.epochs, **options)


def save_trained(model, history, args):
    """Saves `--out` (atomically: the previous file stays whole until the new one is in)."""
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    model.save(args.out)
    last = {k: v[-1] for k, v in (history.history if history else {}).items()}
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in last.items())
    print(f"Saved {args.out}" + (f" ({metrics})" if metrics else ""))
    return EXIT_OK


def run_fit(args):
    check_fit_options(args)
    if args.task == "chat":  # finetunekit.cli.chat.run_fit runs it
        raise CLIError("--task chat is run by finetunekit.cli.chat.run_fit.")
    if args.task != "classification":
        return run_task_fit(args)
    check_task_options(args)
    if is_text_table(args.data):
        return run_text_fit(args)
    augment = parse_augment(args.augment)
    weights = parse_weights(args.weights)
    from finetunekit.core.data.images import list_image_folder

    paths, labels, class_names = list_image_folder(args.data)  # before TensorFlow loads
    if len(class_names) < 2:
        raise CLIError(
            f"{args.data!r} has one class sub-folder ({class_names[0]!r}); a classifier needs "
            "at least two."
        )
    fk = library()
    if not (args.backbone.endswith(".keras") or os.path.exists(args.backbone)):
        fk.get_application(args.backbone)  # unknown names fail here, with suggestions
    from finetunekit.core.data.pipeline import split_indices

    validation = None
    if args.validation_split:
        # Stratified and seeded, the same split FineTuner.fit(validation_split=...) makes.
        kept, held_out = split_indices(len(paths), args.validation_split, labels, args.seed)
        validation = ([paths[i] for i in held_out], [labels[i] for i in held_out])
        paths, labels = [paths[i] for i in kept], [labels[i] for i in kept]
    input_shape = None if args.image_size is None else (args.image_size, args.image_size, 3)
    head = fk.ClassificationHead(num_classes=len(class_names), dropout=args.dropout)
    model = build_finetuner(
        fk, args, head, weights, input_shape=input_shape, augment=augment,
        preprocessing=args.preprocessing, class_names=class_names,
    )
    print(
        f"Training {model.backbone_kind.architecture or args.backbone} on {len(class_names)} classes "
        f"({', '.join(class_names)}): {len(paths)} training and "
        f"{len(validation[0]) if validation else 0} validation images, input "
        f"{'x'.join(map(str, model.backbone_kind.input_shape))}, unfreeze={args.unfreeze}",
        flush=True,
    )
    history = train(
        model, paths, labels, args, validation_data=validation, on_bad_image=args.on_bad_image
    )
    return save_trained(model, history, args)


def run_text_fit(args):
    """`finetunekit fit --backbone TEXT_PRESET --data reviews.csv`: text classification."""
    given = {
        "--image-size": args.image_size is not None,
        "--augment": args.augment not in (None, "none"),
        "--preprocessing": args.preprocessing != "auto",
        "--on-bad-image": args.on_bad_image != "error",
    }
    image_only = [option for option, used in given.items() if used]
    if image_only:
        raise CLIError(f"{', '.join(image_only)} applies to image data; --data is a table of texts.")
    from finetunekit.core.data.text_readers import read_table, text_columns

    table = read_table(args.data)  # before TensorFlow loads
    text_col, label_col = text_columns(table)
    if label_col is None:
        raise CLIError(
            f"--data {args.data!r} has no label column (columns: {list(table.columns)}); name "
            "it label (or labels, class, category, target)."
        )
    texts, labels = table[text_col].tolist(), [str(v) for v in table[label_col].tolist()]
    class_names = sorted(set(labels))
    if len(class_names) < 2:
        raise CLIError(
            f"--data {args.data!r} has one label ({class_names[0]!r}); a classifier needs at "
            "least two."
        )
    fk = library()
    head = fk.ClassificationHead(num_classes=len(class_names), dropout=args.dropout)
    model = build_finetuner(fk, args, head, parse_weights(args.weights), class_names=class_names)
    print(
        f"Training {args.backbone} on {len(class_names)} classes ({', '.join(class_names)}): "
        f"{len(texts)} texts from {args.data}, validation split {args.validation_split}, "
        f"unfreeze={args.unfreeze}",
        flush=True,
    )
    history = train(model, texts, labels, args, validation_split=args.validation_split)
    return save_trained(model, history, args)


def run_evaluate(args):
    return evaluate_model(load_finetuner(model_argument(args), compile=True), args)


def evaluate_model(model, args):
    """`evaluate` of a loaded model that is not a chat model (those: `cli.chat`)."""
    if task_of(model) in ("segmentation", "detection", "seq2seq") or args.masks is not None:
        x, y, count = evaluation_data(model, args)
    else:
        if getattr(model.backbone_kind, "modality", None) == "image":
            check_image_folder(args.data)
        x, y, count = args.data, None, None
    if args.report:
        report = model.evaluate(x, y, batch_size=args.batch_size, verbose=0, report=True)
        print(json.dumps(report.to_dict(), indent=2) if args.json else report)
        return EXIT_OK
    results = model.evaluate(x, y, batch_size=args.batch_size, verbose=0, return_dict=True)
    results = {k: float(v) for k, v in results.items()}
    count = count_examples(model, args.data) if count is None else count
    if args.json:
        print(json.dumps({"num_examples": count, **results}, indent=2))
        return EXIT_OK
    print(f"Scored {count} examples from {args.data}")
    for name, value in results.items():
        print(f"{name}: {value:.4f}")
    return EXIT_OK


def run_export(args):
    model = load_finetuner(args.model, compile=False)
    path = model.export(args.out, format=args.format)
    print(f"Exported {args.format} to {path or args.out}")
    return EXIT_OK


# `finetunekit fit --task ...`: segmentation, detection, translation and chat from the shell.
# The names are the heads' declared `cli_task` (tests/test_cli_tasks.py checks them against the
# family registry); they are spelled here so that `--help` does not load Keras.
TASKS = ("classification", "segmentation", "detection", "seq2seq", "chat")
PYTHON_ONLY_TASKS = ("speech",)  # predicted from the shell, trained from Python
IMAGE_TASKS = ("segmentation", "detection")


def add_task_options(fit):
    """The `--task` option of `fit` and the options of its tasks."""
    fit.add_argument(
        "--task",
        choices=TASKS,
        default="classification",
        help="what to learn: classification (--data: one sub-folder per class), segmentation "
        "(--data images/ --masks masks/), detection (--data a COCO json, VOC or YOLO folder) "
        "seq2seq (--data a CSV/TSV/JSONL of source, target pairs; --backbone a Seq2SeqLM "
        "preset or folder) or chat (--data a JSONL/JSON/CSV/Parquet file of conversations; "
        "--backbone a .gguf file or a keras-hub CausalLM preset or folder)",
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
        "--ignore-index",
        type=int,
        default=None,
        help="segmentation: the mask value of void/unlabelled pixels (e.g. 255), left out of "
        "the loss, the scores and the class count",
    )
    fit.add_argument(
        "--max-target-length",
        type=positive_int,
        default=64,
        help="seq2seq: longest target in tokens (longer targets are an error)",
    )
    add_chat_fit_options(fit)


def add_chat_fit_options(fit):
    """The options of `fit --task chat` (None when not given: other tasks refuse them)."""
    fit.add_argument(
        "--lora-rank",
        type=positive_int,
        default=None,
        help="chat: LoRA rank; only the LoRA factors train (default: 8 with --unfreeze 0)",
    )
    fit.add_argument(
        "--train-on",
        choices=("completion", "all"),
        default=None,
        help="chat: the tokens the loss counts, the assistant turns or all (default: completion)",
    )
    fit.add_argument(
        "--sequence-length",
        type=positive_int,
        default=None,
        help="chat: longest training example in tokens (default: the backbone's)",
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
    if task != "segmentation" and getattr(args, "ignore_index", None) is not None:
        raise CLIError(f"--ignore-index applies to --task segmentation only (this is --task {task}).")
    if task in ("classification", "seq2seq", "chat") and args.num_classes is not None:
        raise CLIError(
            f"--num-classes applies to --task segmentation and detection; with --task {task} "
            "it comes from the data."
        )
    if task != "classification" and not os.path.exists(args.data):
        raise FileNotFoundError(f"--data: no such file or folder: {args.data!r}")
    if task == "seq2seq" and args.augment not in (None, "none"):
        raise CLIError("--augment applies to image tasks; --task seq2seq takes none.")
    chat_only = [o for o, d in (("--lora-rank", "lora_rank"), ("--train-on", "train_on"),
                                ("--sequence-length", "sequence_length")) if getattr(args, d, None)]
    if task != "chat" and chat_only:
        raise CLIError(f"{', '.join(chat_only)} applies to --task chat only (this is --task {task}).")


# ------------------------------------------------------------------- data
def _segmentation_data(fk, args):
    import numpy as np

    from finetunekit.families.segmentation.masks import read_mask_data

    if not os.path.isdir(args.data):
        raise CLIError(
            f"--data {args.data!r} is not a folder. --task segmentation takes a folder of "
            "images (no class sub-folders) and --masks a folder of PNG masks."
        )
    images, masks = read_mask_data(args.data, args.masks)
    void = args.ignore_index
    highest = max(int(np.max(np.where(mask == void, 0, mask) if void is not None else mask))
                  for mask in masks)
    num_classes = args.num_classes or highest + 1
    head = fk.SegmentationHead(num_classes=num_classes, decoder=args.decoder, ignore_index=void)
    return images, masks, head, None, f"{num_classes} classes"


def _detection_data(fk, args):
    import numpy as np

    from finetunekit.families.detection.readers import dataset_layout, read_detection_data

    if dataset_layout(args.data) is None:  # a plain image folder reads as images to predict on
        raise CLIError(
            f"--data {args.data!r} is not detection data. --task detection takes a COCO json, "
            "a Pascal VOC folder (Annotations/ + JPEGImages/, annotations/ or annots/ + images/, "
            "or .xml files beside the images) or a YOLO folder (images/ + labels/)."
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
    from finetunekit.families.seq2seq.pipeline import read_pairs

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
    """The CLI task of a saved FineTuner: its head's declared `cli_task`, else "classification".

    `speech` (a `SpeechToTextHead`) is predicted from the command line; `fit`
    and `evaluate` for it are Python-only.
    """
    return model.head.cli_task or "classification"


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
        from finetunekit.families.seq2seq.pipeline import read_pairs

        x, y = read_pairs(args.data)
    if y is None:
        raise CLIError(f"--data {args.data!r} has no {task} targets to score against.")
    return x, y, len(x)
