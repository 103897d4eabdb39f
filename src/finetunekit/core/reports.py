"""Evaluation reports (scikit-learn metrics) and training-curve pictures.

`fk.report(ft, x, y)` (or `ft.evaluate(x, y, report=True)`) predicts on the
data and returns a `Report`: accuracy, macro/weighted precision, recall and F1,
per-class scores and the confusion matrix for a classifier; per-class and
micro/macro scores for a multi-label head; MAE, RMSE and R2 for regression.
"""

import os

import numpy as np

from finetunekit.core.plotting import figure, save_figure

__all__ = ["Report", "plot_history", "report"]


#: Per-class columns of `str(report)` by task (others: precision, recall, f1, support).
TABLE_COLUMNS = {
    "regression": ["mae", "rmse", "r2"],
    "segmentation": ["iou", "dice", "precision", "recall", "support"],
    "detection": ["ap", "ap_50", "support"],
}


class Report:
    """Scores of a model on labelled data.

    Build one with `fk.report(ft, x, y)` or `ft.evaluate(x, y, report=True)`.

    Attributes:
        task: str. `"classification"`, `"multi_label"`, `"regression"` or
            `"segmentation"` (`mean_iou`, `pixel_accuracy`, `mean_dice`; per
            class `iou`, `dice`, ...; the pixel confusion matrix).
        metrics: dict. Overall scores, e.g. `accuracy`, `macro_f1`,
            `weighted_precision` (classification); `micro_f1`, `macro_f1`,
            `subset_accuracy`, `hamming_loss` (multi-label); `mae`, `rmse`,
            `r2` (regression).
        per_class: dict. Class name (or output index for regression) to a
            dict of scores (`precision`, `recall`, `f1`, `support`; or
            `mae`, `rmse`, `r2`).
        confusion_matrix: numpy array or None. `(n, n)` counts with true
            classes in rows; `(n, 2, 2)` per-class matrices for multi-label;
            None for regression.
        class_names: list of str. Names of the rows/columns.
        num_examples: int.

    Example:
    ```python
    report = fk.report(ft, x_test, y_test)
    print(report)
    report.metrics["macro_f1"]
    report.plot_confusion_matrix("confusion.png")
    ```
    """

    def __init__(self, task, metrics, per_class, confusion_matrix, class_names, num_examples):
        self.task = task
        self.metrics = metrics
        self.per_class = per_class
        self.confusion_matrix = confusion_matrix
        self.class_names = list(class_names)
        self.num_examples = int(num_examples)

    def __getitem__(self, key):
        return self.metrics[key]

    def to_dict(self):
        """Returns the report as plain JSON-serialisable Python values.

        Returns:
            A dict with `task`, `num_examples`, `metrics`, `per_class`,
            `class_names` and `confusion_matrix` (nested lists or None).
        """
        matrix = self.confusion_matrix
        return {
            "task": self.task,
            "num_examples": self.num_examples,
            "metrics": {k: float(v) for k, v in self.metrics.items()},
            "per_class": {
                str(name): {k: _plain(v) for k, v in scores.items()}
                for name, scores in self.per_class.items()
            },
            "class_names": list(self.class_names),
            "confusion_matrix": None if matrix is None else np.asarray(matrix).tolist(),
        }

    def __str__(self):
        lines = [f"{self.task} report on {self.num_examples} examples", ""]
        columns = TABLE_COLUMNS.get(self.task, ["precision", "recall", "f1", "support"])
        width = max([len(str(n)) for n in self.per_class] + [12])
        if self.per_class:
            lines.append(" " * width + "".join(f"{c:>11}" for c in columns))
        for name, scores in self.per_class.items():
            cells = "".join(_cell(scores.get(c)) for c in columns)
            lines.append(f"{str(name):>{width}}{cells}")
        lines.append("")
        for key, value in self.metrics.items():
            lines.append(f"{key:>{width + 8}}: {value:.4f}")
        if self.task == "classification" and self.confusion_matrix is not None:
            lines += ["", "confusion matrix (rows: true, columns: predicted)"]
            names = [str(n) for n in self.class_names]
            cell = max([len(n) for n in names] + [len(str(self.confusion_matrix.max())), 4]) + 1
            lines.append(" " * width + "".join(f"{n:>{cell}}" for n in names))
            for name, row in zip(names, self.confusion_matrix, strict=True):
                lines.append(f"{name:>{width}}" + "".join(f"{int(v):>{cell}}" for v in row))
        return "\n".join(lines)

    def __repr__(self):
        shown = ", ".join(f"{k}={v:.4f}" for k, v in list(self.metrics.items())[:3])
        return f"<Report {self.task}: {shown}>"

    def plot_confusion_matrix(self, path, normalize=False, dpi=100):
        """Draws the labelled confusion matrix with counts to a PNG file.

        Args:
            path: str. The PNG file to write.
            normalize: bool. Colour by row fraction (counts are still
                printed). Defaults to `False`.
            dpi: int. Resolution. Defaults to `100`.

        Returns:
            The path written.

        Raises:
            ImportError: matplotlib is not installed.
            ValueError: a regression report (no confusion matrix).

        Example:
        ```python
        fk.report(ft, x, y).plot_confusion_matrix("confusion.png")
        ```
        """
        if self.confusion_matrix is None:
            raise ValueError(f"A {self.task} report has no confusion matrix.")
        matrices = np.asarray(self.confusion_matrix)
        if self.task == "multi_label":
            titles = [str(n) for n in self.class_names]
            ticks = [["no", "yes"]] * len(titles)
        else:
            matrices, titles = matrices[None], ["confusion matrix"]
            ticks = [[str(n) for n in self.class_names]]
        count = len(matrices)
        cols = min(count, 4)
        rows = int(np.ceil(count / cols))
        size = max(3.0, 0.6 * matrices.shape[-1] + 2.0)
        fig = figure(figsize=(size * cols, size * rows))
        axes = fig.subplots(rows, cols, squeeze=False)
        for ax in axes.ravel()[count:]:
            ax.axis("off")
        for ax, matrix, title, names in zip(axes.ravel()[:count], matrices, titles, ticks, strict=True):
            shown = matrix.astype(float)
            if normalize:
                shown = shown / np.maximum(shown.sum(axis=1, keepdims=True), 1)
            image = ax.imshow(shown, cmap="Blues", vmin=0)
            fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
            n = len(names)
            ax.set_xticks(range(n), labels=names, rotation=45 if n > 4 else 0, ha="right" if n > 4 else "center")
            ax.set_yticks(range(n), labels=names)
            ax.set_xlabel("predicted")
            ax.set_ylabel("true")
            ax.set_title(title)
            threshold = shown.max() / 2 if shown.size else 0
            for i in range(n):
                for j in range(n):
                    ax.text(
                        j, i, str(int(matrix[i, j])), ha="center", va="center",
                        color="white" if shown[i, j] > threshold else "black",
                    )
        fig.tight_layout()
        path = os.fspath(path)
        save_figure(fig, path, dpi=dpi)
        return path


def _plain(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value)
    return value


def _cell(value):
    if value is None:
        return " " * 11
    if isinstance(value, (int, np.integer)):
        return f"{int(value):>11d}"
    return f"{float(value):>11.4f}"



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
