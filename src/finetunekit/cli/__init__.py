"""The `finetunekit` command line: `demo`, `fit`, `evaluate`, `predict`, `export` and `chat`.

Exit codes: `0` success; `2` usage error, or `--weights imagenet` without
network; `3` bad input or data (a `ValueError`, `FileNotFoundError` or
`FileExistsError` from the library, or diverged training), reported as
`error: <message>` on stderr without a traceback; `1` anything unexpected.

`--help` and `--version` load neither TensorFlow nor Keras; commands load them
when needed, hiding TensorFlow's C++ start-up notices (`TF_CPP_MIN_LOG_LEVEL=0`
shows them). Commands live in `cli.commands` (`fit --task
segmentation|detection|seq2seq|chat`), `cli.predict` and `cli.chat`; `--out` is
written atomically.

Example:
```shell
finetunekit demo
finetunekit fit --backbone resnet50 --data photos/ --epochs 5 --out animals.keras
finetunekit evaluate --model animals.keras --data photos_test/
finetunekit predict --model animals.keras photos_new/1.jpg photos_new/2.jpg
finetunekit fit --task detection --backbone resnet50 --data coco.json --out boxes.keras
finetunekit fit --task chat --backbone smollm2.gguf --data conversations.jsonl --out chat.keras
finetunekit chat chat.keras --system "Be brief."
```
"""

import argparse
import importlib
import os
import sys
import textwrap

from finetunekit.cli.args import fraction, learning_rate, positive_int, unfreeze
from finetunekit.cli.chat_options import add_chat_command, add_generation_options
from finetunekit.cli.commands import (
    EXIT_BAD_INPUT,
    EXIT_UNEXPECTED,
    EXIT_USAGE,
    CLIError,
    NoNetworkError,
    add_task_options,
)

__all__ = ["CLIError", "build_parser", "main"]

_COMMANDS = "finetunekit.cli.commands"
_PREDICT = "finetunekit.cli.predict"
_CHAT = "finetunekit.cli.chat"  # fit and evaluate of chat models; the others go on to commands


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


def build_parser():
    """Builds the `finetunekit` argument parser (cheap: no TensorFlow, no Keras).

    Returns:
        An `argparse.ArgumentParser` with the sub-commands `demo`, `fit`,
        `evaluate`, `predict`, `export` and `chat`.
    """
    from finetunekit.version import __version__

    parser = argparse.ArgumentParser(
        prog="finetunekit",
        description="Fine-tune pretrained Keras models from the command line.",
        epilog="Run 'finetunekit COMMAND --help' for the options of a command.\n"
        "Exit codes: 0 ok, 2 usage error (or --weights imagenet without network), "
        "3 bad input or data, 1 unexpected error.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"finetunekit {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_demo(commands)
    _add_fit_options(_add_fit(commands))
    _add_evaluate(commands)
    _add_predict(commands)
    _add_export(commands)
    add_chat_command(commands, _HelpFormatter)
    return parser


def _add_demo(commands):
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
        type=positive_int,
        default=5,
        help="labelled training images per new digit",
    )
    demo.add_argument("--quiet", action="store_true", help="print only the final numbers")
    demo.add_argument("--json", action="store_true", help="print the results as JSON")
    demo.set_defaults(handler=(_COMMANDS, "run_demo"))


def _add_fit(commands):
    """The `fit` sub-command with its data, model and weights options."""
    fit = commands.add_parser(
        "fit",
        help="fine-tune a backbone on a folder of images, one sub-folder per class (or "
        "--task segmentation, detection, seq2seq)",
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
    fit.add_argument(
        "--data",
        required=True,
        help="folder with one sub-folder per class (photos/cat/1.jpg, photos/dog/2.jpg, ...)",
    )
    fit.add_argument("--out", required=True, help="where to save the model (.keras)")
    fit.add_argument("--epochs", type=positive_int, default=5, help="training epochs in all")
    fit.add_argument(
        "--weights",
        default="imagenet",
        help='backbone weights: "imagenet" (downloaded once into ~/.keras/models/), "none" '
        "(random) or a .weights.h5/.keras path",
    )
    fit.add_argument(
        "--image-size",
        type=positive_int,
        default=None,
        help="input height and width of the backbone (default: the backbone's native size)",
    )
    fit.add_argument(
        "--unfreeze",
        type=unfreeze,
        default=0,
        help='backbone blocks that train: 0 (head only), N (last N blocks) or "all"',
    )
    fit.add_argument(
        "--preprocessing",
        choices=("auto", "caffe", "tf", "torch", "zero_one", "none"),
        default="auto",
        help='in-model normalisation of 0-255 images; "auto" is the backbone\'s own',
    )
    fit.add_argument("--dropout", type=fraction, default=0.0, help="dropout before the output")
    add_task_options(fit)
    fit.set_defaults(handler=(_CHAT, "run_fit"))
    return fit


def _add_fit_options(fit):
    """The training options of `fit`."""
    fit.add_argument(
        "--freeze-epochs",
        type=int,
        default=None,
        help="with --unfreeze: first train the head alone for this many epochs, then "
        "unfreeze at a 10x lower learning rate (FineTuner.fine_tune)",
    )
    fit.add_argument("--batch-size", type=positive_int, default=32, help="batch size")
    fit.add_argument(
        "--learning-rate",
        type=learning_rate,
        default=None,
        help="learning rate (default: 1e-3 with a frozen backbone, 1e-4 otherwise)",
    )
    fit.add_argument(
        "--validation-split",
        type=fraction,
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
        "--on-bad-image",
        choices=("error", "skip"),
        default="error",
        help="what to do with unreadable image files",
    )
    fit.add_argument("--seed", type=int, default=None, help="seed of the split and shuffling")
    fit.add_argument("--quiet", action="store_true", help="no per-epoch output")


def _add_evaluate(commands):
    evaluate = commands.add_parser(
        "evaluate",
        help="evaluate a saved model on a folder of labelled images",
        description=_wrap(
            "Evaluates a model saved by 'finetunekit fit' (or FineTuner.save) on a "
            "folder with one sub-folder per class; the class names must be those of the "
            "model. Says how many examples it scored."
        ),
        epilog="Example:\n  finetunekit evaluate --model animals.keras --data photos_test/",
        formatter_class=_HelpFormatter,
    )
    evaluate.add_argument(
        "model_path", nargs="?", metavar="MODEL", help="a saved .keras model (or --model)"
    )
    evaluate.add_argument("--model", default=None, help="a saved .keras model")
    evaluate.add_argument("--data", required=True, help="folder with one sub-folder per class")
    evaluate.add_argument(
        "--masks", default=None, help="a segmentation model's PNG masks of the --data images"
    )
    evaluate.add_argument("--batch-size", type=positive_int, default=32, help="batch size")
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON")
    evaluate.add_argument(
        "--report",
        action="store_true",
        help="print per-class precision/recall/F1 and the confusion matrix (scikit-learn); "
        "for a chat model loss, perplexity, and exact match and chrF of generated answers",
    )
    evaluate.set_defaults(handler=(_CHAT, "run_evaluate"))


def _add_predict(commands):
    predict = commands.add_parser(
        "predict",
        help="predict labels, masks, boxes or text for images, audio or texts with a saved model",
        description=_wrap(
            "Prints one line per input: the image path (or the text), the predicted label "
            "and (for single-label classification) the probability of that label. Folders "
            "are searched for images, in natural order (2.jpg before 10.jpg). A text model "
            "takes the texts themselves as arguments."
        ),
        epilog="Examples:\n  finetunekit predict --model animals.keras new/1.jpg new/2.jpg\n"
        '  finetunekit predict --model sentiment.keras "a great film" "dull"\n'
        '  finetunekit predict assistant.keras "Write a haiku about tea."',
        formatter_class=_HelpFormatter,
    )
    predict.add_argument(
        "--model", default=None, help="a saved .keras model (or the first INPUT ending in .keras)"
    )
    predict.add_argument(
        "images",
        nargs="*",
        metavar="INPUT",
        help="image or audio files or folders; for a text or chat model, the texts (prompts)",
    )
    predict.add_argument("--batch-size", type=positive_int, default=32, help="batch size")
    predict.add_argument(
        "--json", action="store_true", help="print a JSON list with all class probabilities"
    )
    predict.add_argument(
        "--out",
        default=None,
        help="segmentation: folder for the PNG masks; chat: a .json file for the answers",
    )
    add_generation_options(predict)
    predict.set_defaults(handler=(_PREDICT, "run_predict"))


def _add_export(commands):
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
    export.set_defaults(handler=(_COMMANDS, "run_export"))


# ---------------------------------------------------------------------- main
def _quiet_environment():
    """Before TensorFlow loads: hide its C++ logging unless the user chose a level."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _usage_problem(args):
    """What is missing from `predict`/`evaluate` arguments argparse cannot check, or None."""
    if args.command == "evaluate" and bool(args.model) == bool(args.model_path):
        return "name the model once: evaluate MODEL.keras --data ... (or --model MODEL.keras)"
    if args.command != "predict":
        return None
    inputs = list(args.images)
    if args.model is None and inputs and inputs[0].endswith(".keras"):
        inputs = inputs[1:]
    elif args.model is None:
        return "name the model: predict MODEL.keras INPUT ... (or --model MODEL.keras)"
    if not inputs and args.data is None:
        return "give the inputs: files, folders or texts (or --data for a chat model's prompts)"
    return None


def _diverged(error):
    callbacks = sys.modules.get("finetunekit.training.callbacks")  # loaded if training ran
    return callbacks is not None and isinstance(error, callbacks.TrainingDivergedError)


def _report_error(error):
    """Prints a known error without a traceback; returns its exit code, or None."""
    if isinstance(error, NoNetworkError):
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    if _diverged(error):
        print(
            f"error: {error}\nWith the command line: try a 10x lower --learning-rate.",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    if isinstance(error, (ValueError, FileNotFoundError, FileExistsError)):
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return None


def main(argv=None):
    """Runs the `finetunekit` command line.

    Args:
        argv: list of str or None. Arguments without the program name;
            defaults to `sys.argv[1:]`.

    Returns:
        The exit code: `0` ok, `2` usage error (or no network for `--weights
        imagenet`), `3` bad input or data (training that diverged included),
        `1` unexpected error.

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
    problem = _usage_problem(args)
    if problem:
        print(f"finetunekit {args.command}: error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    _quiet_environment()
    module, name = args.handler
    try:
        return getattr(importlib.import_module(module), name)(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        code = _report_error(error)
        if code is not None:
            return code
        import traceback

        traceback.print_exc()
        print(
            "error: unexpected failure (see the traceback above); please report it.",
            file=sys.stderr,
        )
        return EXIT_UNEXPECTED


if __name__ == "__main__":
    sys.exit(main())
