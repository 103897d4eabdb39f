"""Evaluation reports (scikit-learn metrics) and training-curve pictures.

`fk.report(ft, x, y)` (or `ft.evaluate(x, y, report=True)`) predicts on the
data and returns a `Report`: accuracy, macro/weighted precision, recall and F1,
per-class scores and the confusion matrix for a classifier; per-class and
micro/macro scores for a multi-label head; MAE, RMSE and R2 for regression.
"""

import os

import numpy as np

from finetunekit.core.plotting import figure, save_figure
from finetunekit.core.scores import Report

__all__ = ["Report", "plot_history", "report"]


def _collect(ft, x, y, batch_size, options):
    """Predicts on `x`; returns `(outputs, targets)` as numpy arrays, paired example by example."""
    prepared = ft.prepare(x, y, batch_size, **options)
    if prepared.class_names is not None and ft.class_names is None:
        ft.class_names = list(prepared.class_names)
    train = prepared.train
    if not train.is_dataset:
        if train.y is None:
            raise ValueError("A report needs labels: pass y=... (or a class folder).")
        outputs = ft.predict(train.x, batch_size=batch_size, verbose=0)
        return np.asarray(outputs), np.asarray(train.y)
    # A dataset of (inputs, targets) batches: predict batch by batch so that
    # outputs and targets stay paired even if the dataset shuffles.
    outputs, collected = [], []
    for batch in train.x:
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise ValueError(
                "A report needs labels: pass (x, y), a class folder, or a dataset of "
                "(inputs, labels) batches."
            )
        outputs.append(np.asarray(ft.predict_on_batch(batch[0])))
        collected.append(np.asarray(batch[1]))
    if not outputs:
        raise ValueError("No data: the dataset is empty.")
    return _concatenate(outputs), _concatenate(collected)


def _concatenate(parts):
    """Concatenates batches; sequence batches of different lengths are padded to the longest."""
    if len({p.shape[1:2] for p in parts}) <= 1:
        return np.concatenate(parts)
    from finetunekit.core.data.constants import IGNORE_INDEX

    longest = max(p.shape[1] for p in parts)
    padded = []
    for p in parts:
        pad = [(0, 0), (0, longest - p.shape[1])] + [(0, 0)] * (p.ndim - 2)
        fill = IGNORE_INDEX if p.dtype.kind in "iu" else 0
        padded.append(np.pad(p, pad, constant_values=fill))
    return np.concatenate(padded)


def report(ft, x, y=None, batch_size=None, **options):
    """Evaluates a FineTuner and returns its head's `Report` (scikit-learn / seqeval metrics).

    Args:
        ft: a `fk.FineTuner`.
        x: data in any form `evaluate` accepts (arrays, a class folder, paths,
            a DataFrame, a dataset of `(inputs, labels)` batches, texts).
        y: labels, or None for a folder / DataFrame / dataset.
        batch_size: int. Defaults to 32.
        **options: data options of `evaluate` (`on_bad_image`, `x_col`,
            `y_col`, `padding`).

    Returns:
        A `Report` (`Head.report`): accuracy, per-class and averaged scores
        and the confusion matrix for a classifier; MAE/RMSE/R2 for
        regression; entity-level scores for token classification.

    Example:
    ```python
    report = fk.report(ft, "photos/test/")
    print(report)            # per-class table, averages, confusion matrix
    report.to_dict()["metrics"]["accuracy"]
    ```
    """
    made = ft.head.make_report(ft, x, y, batch_size=batch_size, **options)
    if made is not None:  # heads that score generated output (speech to text, seq2seq)
        return made
    outputs, targets = _collect(ft, x, y, batch_size, options)
    return ft.head.report(outputs, targets, ft.class_names)


def plot_history(history, path, dpi=100):
    """Draws training curves (loss and every metric, train vs validation) to a PNG.

    Args:
        history: a `keras.callbacks.History` (what `fit` returns) or its
            `.history` dict.
        path: str. The PNG file to write.
        dpi: int. Resolution. Defaults to `100`.

    Returns:
        The path written.

    Raises:
        ImportError: matplotlib is not installed.
        ValueError: the history is empty.

    Example:
    ```python
    history = ft.fit(x, y, validation_split=0.2, epochs=5)
    fk.plot_history(history, "curves.png")
    ```
    """
    logs = getattr(history, "history", history)
    if not isinstance(logs, dict) or not logs:
        raise ValueError(
            "plot_history needs the History returned by fit (or its .history dict) with at "
            f"least one logged value. Received: {type(history).__name__}"
        )
    epochs = list(getattr(history, "epoch", []) or [])
    names = [k for k in logs if not k.startswith("val_") and k != "learning_rate"]
    names += [k[4:] for k in logs if k.startswith("val_") and k[4:] not in logs]
    names.sort(key=lambda k: (k != "loss", k))
    fig = figure(figsize=(4.5 * len(names), 3.5))
    from matplotlib.ticker import MaxNLocator

    axes = fig.subplots(1, len(names), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        for key, label, style in ((name, "train", "-o"), (f"val_{name}", "validation", "--o")):
            if key in logs:
                values = [float(v) for v in logs[key]]
                xs = [e + 1 for e in epochs] if len(epochs) == len(values) else list(
                    range(1, len(values) + 1)
                )
                ax.plot(xs, values, style, label=label, markersize=4)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path = os.fspath(path)
    save_figure(fig, path, dpi=dpi)
    return path
