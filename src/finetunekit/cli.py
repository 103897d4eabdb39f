"""The `finetunekit` command line: `demo`, `fit`, `evaluate` and `predict`.

Exit codes: `0` success, `2` usage error (from argparse), `3` bad input or
data (a `ValueError`, `FileNotFoundError` or `FileExistsError` from the
library, reported as `error: <message>` on stderr without a traceback), `1`
anything unexpected. Files are written atomically (`finetunekit.saving`): an
interrupted `fit` never leaves a half-written `--out` file.

Example:
```shell
finetunekit demo
finetunekit fit --backbone resnet50 --data photos/ --epochs 5 --out animals.keras
finetunekit evaluate --model animals.keras --data photos_test/
finetunekit predict --model animals.keras photos_new/1.jpg photos_new/2.jpg
```
"""

import argparse
import contextlib
import json
import os
import sys
import textwrap

# Before TensorFlow is first imported: keep its C++ start-up logging quiet.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

EXIT_OK = 0
EXIT_UNEXPECTED = 1
EXIT_USAGE = 2
EXIT_BAD_INPUT = 3

_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")


class CLIError(ValueError):
    """A bad command-line value found by the CLI itself (exit code 3)."""


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


def _import_tensorflow_quietly():
    """Imports TensorFlow and probes its devices once, hiding the native notices on stderr.

    TensorFlow writes absl/oneDNN/CUDA notices from C++ before its logging is
    configured (so `TF_CPP_MIN_LOG_LEVEL` cannot hide them), at import and at
    its first device probe. Set `TF_CPP_MIN_LOG_LEVEL=0` to see them.
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


def _library():
    _import_tensorflow_quietly()
    import finetunekit

    return finetunekit


# -------------------------------------------------------------------- parser
class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps example epilogs as written and shows defaults that say something."""

    def _get_help_string(self, action):
        help_text = action.help or ""
        if (
            "default" not in help_text
            and action.default is not None
            and action.default is not False
            and action.default is not argparse.SUPPRESS
            and not action.required
            and action.option_strings
        ):
            help_text += " (default: %(default)s)"
        return help_text


def _wrap(text):
    return textwrap.fill(" ".join(text.split()), width=79)


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _unfreeze(text):
    if text.lower() == "all":
        return "all"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'expected a number of blocks or "all", got {text!r}'
        ) from None
    if value < 0:
        raise argparse.ArgumentTypeError(f'expected a number of blocks >= 0 or "all", got {text!r}')
    return value


def _fraction(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


def build_parser():
    """Builds the `finetunekit` argument parser.

    Returns:
        An `argparse.ArgumentParser` with the sub-commands `demo`, `fit`,
        `evaluate` and `predict`.
    """
    from finetunekit.version import __version__

    parser = argparse.ArgumentParser(
        prog="finetunekit",
        description="Fine-tune pretrained Keras image models from the command line.",
        epilog="Run 'finetunekit COMMAND --help' for the options of a command.\n"
        "Exit codes: 0 ok, 2 usage error, 3 bad input or data, 1 unexpected error.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"finetunekit {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="transfer learning vs. training from scratch, offline, in under a minute",
        description=_wrap(
            "Pretrains a small CNN on scikit-learn's digits 0-4, fine-tunes it with "
            "FineTuner on a few labelled images of the digits 5-9 and compares with the same "
            "CNN trained from scratch. Needs no download."
        ),
        formatter_class=_HelpFormatter,
    )
    demo.add_argument("--seed", type=int, default=0, help="random seed of data and training")
    demo.add_argument(
        "--labels-per-class",
        type=_positive_int,
        default=5,
        help="labelled training images per new digit",
    )
    demo.add_argument("--quiet", action="store_true", help="print only the final numbers")
    demo.add_argument("--json", action="store_true", help="print the results as JSON")
    demo.set_defaults(handler=_run_demo)

    fit = commands.add_parser(
        "fit",
        help="fine-tune a backbone on a folder of images, one sub-folder per class",
        description=_wrap(
            "Fine-tunes a keras.applications backbone on a folder with one "
            "sub-folder per class (photos/cat/1.jpg, photos/dog/2.jpg, ...) and saves the "
            "model, preprocessing included, as a .keras file."
        ),
        epilog="Example:\n  finetunekit fit --backbone resnet50 --data photos/ --epochs 5 "
        "--out animals.keras",
        formatter_class=_HelpFormatter,
    )
    fit.add_argument(
        "--backbone",
        required=True,
        help='keras.applications name (e.g. "resnet50", "mobilenetv2", "efficientnetb0") '
        "or the path of a .keras backbone",
    )
    fit.add_argument("--data", required=True, help="folder with one sub-folder per class")
    fit.add_argument("--out", required=True, help="where to save the model (.keras)")
    fit.add_argument("--epochs", type=_positive_int, default=5, help="training epochs in all")
    fit.add_argument(
        "--weights",
        default="imagenet",
        help='backbone weights: "imagenet", "none" (random) or a .weights.h5/.keras path',
    )
    fit.add_argument(
        "--image-size",
        type=_positive_int,
        default=None,
        help="input height and width of the backbone (default: the backbone's native size)",
    )
    fit.add_argument(
        "--unfreeze",
        type=_unfreeze,
        default=0,
        help='backbone blocks that train: 0 (head only), N (last N blocks) or "all"',
    )
    fit.add_argument(
        "--freeze-epochs",
        type=int,
        default=None,
        help="with --unfreeze: first train the head alone for this many epochs, then "
        "unfreeze at a 10x lower learning rate (FineTuner.fine_tune)",
    )
    fit.add_argument("--batch-size", type=_positive_int, default=32, help="batch size")
    fit.add_argument(
        "--learning-rate",
        type=float,
        default=None,
        help="learning rate (default: 1e-3 with a frozen backbone, 1e-4 otherwise)",
    )
    fit.add_argument(
        "--validation-split",
        type=_fraction,
        default=0.2,
        help="fraction of the images held out (stratified) for validation; 0 for none",
    )
    fit.add_argument(
        "--augment",
        default="none",
        help='"none", "default", or a JSON object of ImageDataGenerator-style keywords, '
        'e.g. \'{"rotation_range": 15, "horizontal_flip": true}\' (default: none)',
    )
    fit.add_argument(
        "--preprocessing",
        choices=("auto", "caffe", "tf", "torch", "zero_one", "none"),
        default="auto",
        help='in-model normalisation of 0-255 images; "auto" is the backbone\'s own',
    )
    fit.add_argument("--dropout", type=_fraction, default=0.0, help="dropout before the output")
    fit.add_argument(
        "--on-bad-image",
        choices=("error", "skip"),
        default="error",
        help="what to do with unreadable image files",
    )
    fit.add_argument("--seed", type=int, default=None, help="seed of the split and shuffling")
    fit.add_argument("--quiet", action="store_true", help="no per-epoch output")
    fit.set_defaults(handler=_run_fit)

    evaluate = commands.add_parser(
        "evaluate",
        help="evaluate a saved model on a folder of labelled images",
        description=_wrap(
            "Evaluates a model saved by 'finetunekit fit' (or FineTuner.save) on a "
            "folder with one sub-folder per class; the class names must be those of the model."
        ),
        epilog="Example:\n  finetunekit evaluate --model animals.keras --data photos_test/",
        formatter_class=_HelpFormatter,
    )
    evaluate.add_argument("--model", required=True, help="a saved .keras model")
    evaluate.add_argument("--data", required=True, help="folder with one sub-folder per class")
    evaluate.add_argument("--batch-size", type=_positive_int, default=32, help="batch size")
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON")
    evaluate.add_argument(
        "--report",
        action="store_true",
        help="print per-class precision/recall/F1 and the confusion matrix (scikit-learn)",
    )
    evaluate.set_defaults(handler=_run_evaluate)

    predict = commands.add_parser(
        "predict",
        help="predict the labels of images with a saved model",
        description=_wrap(
            "Prints one line per image: its path, the predicted label and (for "
            "single-label classification) the probability of that label. Folders are "
            "searched for images."
        ),
        epilog="Example:\n  finetunekit predict --model animals.keras new/1.jpg new/2.jpg",
        formatter_class=_HelpFormatter,
    )
    predict.add_argument("--model", required=True, help="a saved .keras model")
    predict.add_argument("images", nargs="+", metavar="IMAGES", help="image files or folders")
    predict.add_argument("--batch-size", type=_positive_int, default=32, help="batch size")
    predict.add_argument(
        "--json", action="store_true", help="print a JSON list with all class probabilities"
    )
    predict.set_defaults(handler=_run_predict)

    export = commands.add_parser(
        "export",
        help="export a saved model as a TensorFlow SavedModel or TFLite file",
        description=_wrap(
            "Exports a saved FineTuner with its preprocessing included: the exported "
            "model takes raw float images (0-255) and returns the head's outputs. A "
            "labels.txt with the class names is written beside it."
        ),
        epilog="Example:\n  finetunekit export --model animals.keras --out export/ --format tflite",
        formatter_class=_HelpFormatter,
    )
    export.add_argument("--model", required=True, help="a saved .keras model")
    export.add_argument("--out", required=True, help="output folder")
    export.add_argument(
        "--format", choices=("saved_model", "tflite"), default="saved_model", help="export format"
    )
    export.set_defaults(handler=_run_export)
    return parser


# ------------------------------------------------------------------ commands
def _run_demo(args):
    _import_tensorflow_quietly()
    from finetunekit.demo import run_demo

    result = run_demo(
        seed=args.seed,
        labels_per_class=args.labels_per_class,
        verbose=0 if (args.quiet or args.json) else 1,
    )
    if args.json:
        print(json.dumps(result, indent=2))
    elif args.quiet:
        print(
            f"transfer {result['transfer_accuracy']:.3f}  "
            f"scratch {result['scratch_accuracy']:.3f}"
        )
    return EXIT_OK


def _parse_augment(text):
    if text is None or text.lower() == "none":
        return None
    if text.lower() == "default":
        return "default"
    if text.lstrip().startswith("{"):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as error:
            raise CLIError(f"--augment is not valid JSON: {error}") from None
        return value
    raise CLIError(
        f'--augment must be "none", "default" or a JSON object of keywords. Received: {text!r}'
    )


def _parse_weights(text):
    if text.lower() == "none":
        return None
    if text.lower() == "imagenet":
        return "imagenet"
    if not os.path.exists(text):
        raise FileNotFoundError(
            f"--weights: file not found: {text!r}. Use \"imagenet\", \"none\" or the path of a "
            '".weights.h5" or ".keras" file.'
        )
    return text


def _run_fit(args):
    if not args.out.endswith(".keras"):
        raise CLIError(f'--out must be a ".keras" file. Received: {args.out!r}')
    augment = _parse_augment(args.augment)
    weights = _parse_weights(args.weights)
    if args.freeze_epochs is not None and not 0 <= args.freeze_epochs <= args.epochs:
        raise CLIError(
            f"--freeze-epochs must be between 0 and --epochs ({args.epochs}). "
            f"Received: {args.freeze_epochs}"
        )
    if args.freeze_epochs is not None and args.unfreeze == 0:
        raise CLIError("--freeze-epochs needs --unfreeze N or --unfreeze all.")
    # Cheap checks first, before TensorFlow loads.
    from finetunekit.backbones.applications import get_application
    from finetunekit.data.images import list_image_folder

    paths, labels, class_names = list_image_folder(args.data)
    if len(class_names) < 2:
        raise CLIError(
            f"{args.data!r} has one class sub-folder ({class_names[0]!r}); a classifier needs "
            "at least two."
        )
    if not (args.backbone.endswith(".keras") or os.path.exists(args.backbone)):
        get_application(args.backbone)  # unknown names fail here, with suggestions
    fk = _library()
    from finetunekit.data.pipeline import split_indices

    validation = None
    if args.validation_split:
        # Stratified and seeded, the same split FineTuner.fit(validation_split=...) makes.
        train, held_out = split_indices(len(paths), args.validation_split, labels, args.seed)
        validation = ([paths[i] for i in held_out], [labels[i] for i in held_out])
        paths, labels = [paths[i] for i in train], [labels[i] for i in train]
    input_shape = None if args.image_size is None else (args.image_size, args.image_size, 3)
    model = fk.FineTuner(
        backbone=args.backbone,
        head=fk.ClassificationHead(num_classes=len(class_names), dropout=args.dropout),
        weights=weights,
        input_shape=input_shape,
        unfreeze=args.unfreeze,
        augment=augment,
        preprocessing=args.preprocessing,
        class_names=class_names,
    )
    print(
        f"Training {model.backbone_kind.architecture or args.backbone} on {len(class_names)} classes "
        f"({', '.join(class_names)}): {len(paths)} training and "
        f"{len(validation[0]) if validation else 0} validation images, input "
        f"{'x'.join(map(str, model.backbone_kind.input_shape))}, unfreeze={args.unfreeze}",
        flush=True,
    )
    options = {
        "validation_data": validation,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "on_bad_image": args.on_bad_image,
        "verbose": 0 if args.quiet else 2,
    }
    if args.freeze_epochs is not None:
        history = model.fine_tune(
            paths,
            labels,
            epochs=args.epochs,
            freeze_epochs=args.freeze_epochs,
            unfreeze=args.unfreeze,
            learning_rate=args.learning_rate or 1e-3,
            **options,
        )
    else:
        model.compile(learning_rate=args.learning_rate)
        history = model.fit(paths, labels, epochs=args.epochs, **options)
    from finetunekit.saving import save_model

    save_model(model, args.out)  # atomic: the previous --out file stays whole until then
    last = {k: v[-1] for k, v in (history.history if history else {}).items()}
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in last.items())
    print(f"Saved {args.out}" + (f" ({metrics})" if metrics else ""))
    return EXIT_OK


def _load_finetuner(path, compile):
    fk = _library()
    model = fk.load(path, compile=compile)
    if not isinstance(model, fk.FineTuner):
        raise CLIError(
            f"{path!r} holds a {type(model).__name__}, not a finetunekit FineTuner. Save "
            "models with FineTuner.save or 'finetunekit fit'."
        )
    return model


def _run_evaluate(args):
    _check_model_path(args.model)
    model = _load_finetuner(args.model, compile=True)
    if args.report:
        report = model.evaluate(args.data, batch_size=args.batch_size, verbose=0, report=True)
        print(json.dumps(report.to_dict(), indent=2) if args.json else report)
        return EXIT_OK
    results = model.evaluate(args.data, batch_size=args.batch_size, verbose=0, return_dict=True)
    results = {k: float(v) for k, v in results.items()}
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for name, value in results.items():
            print(f"{name}: {value:.4f}")
    return EXIT_OK


def _run_export(args):
    _check_model_path(args.model)
    model = _load_finetuner(args.model, compile=False)
    path = model.export(args.out, format=args.format)
    print(f"Exported {args.format} to {path or args.out}")
    return EXIT_OK


def _expand_images(items):
    paths = []
    for item in items:
        if os.path.isdir(item):
            found = []
            for root, _, files in os.walk(item):
                found += [
                    os.path.join(root, f)
                    for f in files
                    if f.lower().endswith(_IMAGE_EXTENSIONS) and not f.startswith(".")
                ]
            if not found:
                raise CLIError(f"No images found in the folder {item!r}.")
            paths += sorted(found)
        elif os.path.isfile(item):
            paths.append(item)
        else:
            raise FileNotFoundError(f"No such image file or folder: {item!r}")
    return paths


def _check_model_path(path):
    if not os.path.exists(path):
        raise FileNotFoundError(f"No saved model at {path!r}.")


def _run_predict(args):
    paths = _expand_images(args.images)
    _check_model_path(args.model)
    model = _load_finetuner(args.model, compile=False)
    outputs = model.predict(paths, batch_size=args.batch_size, verbose=0)
    labels = model.head.decode(outputs, model.class_names)
    single_label = getattr(model.head, "num_classes", None) and not getattr(
        model.head, "multi_label", False
    )
    rows = []
    for path, label, output in zip(paths, labels, outputs, strict=True):
        row = {"path": path, "label": _plain(label)}
        if single_label:
            row["probability"] = float(output.max())
            names = model.class_names or [str(i) for i in range(len(output))]
            row["probabilities"] = {str(n): float(p) for n, p in zip(names, output, strict=True)}
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    for row in rows:
        label = row["label"]
        if isinstance(label, list):
            label = ",".join(map(str, label))
        line = f"{row['path']}\t{label}"
        if "probability" in row:
            line += f"\t{row['probability']:.4f}"
        print(line)
    return EXIT_OK


def _plain(value):
    """Makes a decoded label JSON-friendly (numpy scalars and arrays to Python)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# ---------------------------------------------------------------------- main
def main(argv=None):
    """Runs the `finetunekit` command line.

    Args:
        argv: list of str or None. Arguments without the program name;
            defaults to `sys.argv[1:]`.

    Returns:
        The exit code: `0` ok, `2` usage error, `3` bad input or data, `1`
        unexpected error.

    Example:
    ```python
    from finetunekit.cli import main

    main(["demo", "--seed", "1"])
    ```
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version and usage errors
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return args.handler(args)
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception:
        import traceback

        traceback.print_exc()
        print(
            "error: unexpected failure (see the traceback above); please report it.",
            file=sys.stderr,
        )
        return EXIT_UNEXPECTED


if __name__ == "__main__":
    sys.exit(main())
