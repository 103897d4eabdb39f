"""What the `finetunekit` sub-commands do (the parser and `main` are in `finetunekit.cli`).

Each `run_*` function takes the parsed arguments and returns an exit code.
This module imports only the standard library at import time: TensorFlow is
loaded, with its start-up notices hidden, when a command first needs it.
"""

import contextlib
import json
import os
import re
import sys

EXIT_OK = 0
EXIT_UNEXPECTED = 1
EXIT_USAGE = 2
EXIT_BAD_INPUT = 3


class CLIError(ValueError):
    """A bad command-line value found by the CLI itself (exit code 3)."""


class NoNetworkError(RuntimeError):
    """A download the command needs failed (exit code 2: choose other options)."""


# --------------------------------------------------------------------- quiet
@contextlib.contextmanager
def _stderr_silenced():
    """Sends file descriptor 2 to /dev/null (C++ logging that ignores TF_CPP_MIN_LOG_LEVEL)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real file descriptor (e.g. captured stderr)
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def import_tensorflow_quietly():
    """Imports TensorFlow and probes its devices once, hiding the native notices on stderr.

    TensorFlow writes absl/oneDNN/CUDA notices from C++ before its logging is
    configured (so `TF_CPP_MIN_LOG_LEVEL` cannot hide them), at import and at
    its first device probe. With `TF_CPP_MIN_LOG_LEVEL=0` they are shown.
    """
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0":
        return
    try:
        with _stderr_silenced():
            import tensorflow as tf

            tf.config.list_physical_devices()
    except ImportError:  # pragma: no cover - another Keras backend
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
    from finetunekit.data.images import IMAGE_EXTENSIONS  # numpy only, no TensorFlow

    return IMAGE_EXTENSIONS


def check_image_folder(path, option="--data"):
    """Fails early, with the fix, when `path` is a file rather than a class folder."""
    if os.path.isfile(path):
        raise CLIError(
            f"{option} {path!r} is a file, not a folder. {option} takes a folder with one "
            "sub-folder per class (photos/cat/1.jpg, photos/dog/2.jpg, ...). To label single "
            "images use 'finetunekit predict --model MODEL.keras IMAGE ...'."
        )


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


def _check_fit_options(args):
    if not args.out.endswith(".keras"):
        raise CLIError(f'--out must be a ".keras" file. Received: {args.out!r}')
    if args.freeze_epochs is not None and not 0 <= args.freeze_epochs <= args.epochs:
        raise CLIError(
            f"--freeze-epochs must be between 0 and --epochs ({args.epochs}). "
            f"Received: {args.freeze_epochs}"
        )
    if args.freeze_epochs is not None and args.unfreeze == 0:
        raise CLIError("--freeze-epochs needs --unfreeze N or --unfreeze all.")
    if getattr(args, "task", "classification") == "classification":
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
    (`finetunekit.backbones.downloads`), over the whole exception chain.
    """
    from finetunekit.backbones.downloads import FETCH_FAILURE, is_download_failure

    for link in _exception_chain(error):
        match = FETCH_FAILURE.search(str(link))
        if match:
            return match.group(1)
        if is_download_failure(link):
            return ""
    return None


def no_network_message(url):
    """What to do when Keras cannot download the ImageNet weights."""
    from finetunekit.backbones.downloads import keras_models_folder

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
    from finetunekit.data.tfds import as_tfds

    source = as_tfds(data)
    if source is not None:
        return int(source.load()[0].cardinality())
    if getattr(model.backbone_kind, "modality", None) == "audio":
        from finetunekit.data.audio_readers import folder_files, read_manifest

        return len((folder_files(data) if os.path.isdir(data) else read_manifest(data))[0])
    if not is_text_model(model):
        from finetunekit.data.images import list_image_folder

        return len(list_image_folder(data)[0])
    if os.path.isfile(data):
        from finetunekit.data.text import read_table

        return len(read_table(data))
    return sum(  # a folder with one sub-folder of .txt files per class
        name.endswith(".txt") and not name.startswith(".")
        for _, _, files in os.walk(data)
        for name in files
    )


# ------------------------------------------------------------------ commands
def run_demo(args):
    import_tensorflow_quietly()
    from finetunekit.demo import run_demo as demo

    result = demo(
        seed=args.seed,
        labels_per_class=args.labels_per_class,
        verbose=0 if (args.quiet or args.json) else 1,
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
    _check_fit_options(args)
    if args.task != "classification":
        from finetunekit.cli_tasks import run_task_fit

        return run_task_fit(args)
    from finetunekit.cli_tasks import check_task_options

    check_task_options(args)
    augment = parse_augment(args.augment)
    weights = parse_weights(args.weights)
    from finetunekit.data.images import list_image_folder

    paths, labels, class_names = list_image_folder(args.data)  # before TensorFlow loads
    if len(class_names) < 2:
        raise CLIError(
            f"{args.data!r} has one class sub-folder ({class_names[0]!r}); a classifier needs "
            "at least two."
        )
    fk = library()
    if not (args.backbone.endswith(".keras") or os.path.exists(args.backbone)):
        fk.get_application(args.backbone)  # unknown names fail here, with suggestions
    from finetunekit.data.pipeline import split_indices

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


def run_evaluate(args):
    model = load_finetuner(args.model, compile=True)
    from finetunekit.cli_tasks import evaluation_data, task_of

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
