"""Argument types of the `finetunekit` command line (argparse `type=` callables).

Each turns a string into a value or raises `argparse.ArgumentTypeError`
with what was expected; argparse prints it as a usage error (exit code 2).
"""

import argparse
import math


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def unfreeze(text):
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


def learning_rate(text):
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number such as 1e-3, got {text!r}")
    return value


def fraction(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value
