"""`fk.Report` and the scikit-learn report sections of the built-in heads.

Each head builds its own section of `fk.report` (`Head.report`); this module
holds the container and the classification, multi-label and regression
sections they share.
"""

import os

import numpy as np

from finetunekit.core.plotting import figure, save_figure

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


def classification_section(outputs, targets, names):
    from sklearn.metrics import classification_report, confusion_matrix

    y_true = targets.reshape(-1).astype(int)
    y_pred = np.argmax(outputs, axis=-1)
    labels = list(range(len(names)))
    table = classification_report(
        y_true, y_pred, labels=labels, target_names=[str(n) for n in names],
        output_dict=True, zero_division=0,
    )
    per_class = {
        str(name): _scores(table[str(name)]) for name in names
    }
    metrics = {"accuracy": float(np.mean(y_true == y_pred))}
    for average in ("macro", "weighted"):
        scores = table[f"{average} avg"]
        for key, value in _scores(scores).items():
            if key != "support":
                metrics[f"{average}_{key}"] = value
    matrix = confusion_matrix(y_true, y_pred, labels=labels)
    return Report("classification", metrics, per_class, matrix, names, len(y_true))


def multi_label_section(outputs, targets, names, threshold):
    from sklearn.metrics import (
        accuracy_score,
        classification_report,
        hamming_loss,
        multilabel_confusion_matrix,
    )

    y_true = targets.astype(int)
    y_pred = (outputs >= np.asarray(threshold, dtype=outputs.dtype)).astype(int)
    table = classification_report(
        y_true, y_pred, target_names=[str(n) for n in names], output_dict=True, zero_division=0
    )
    per_class = {str(name): _scores(table[str(name)]) for name in names}
    metrics = {
        "subset_accuracy": float(accuracy_score(y_true, y_pred)),
        "hamming_loss": float(hamming_loss(y_true, y_pred)),
    }
    for average in ("micro", "macro", "weighted", "samples"):
        for key, value in _scores(table[f"{average} avg"]).items():
            if key != "support":
                metrics[f"{average}_{key}"] = value
    matrix = multilabel_confusion_matrix(y_true, y_pred)
    return Report("multi_label", metrics, per_class, matrix, names, len(y_true))


def regression_section(outputs, targets):
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    y_true = targets.reshape(len(targets), -1).astype("float64")
    y_pred = outputs.reshape(len(outputs), -1).astype("float64")
    metrics = {
        "mae": float(mean_absolute_error(y_true, y_pred)),
        "rmse": float(np.sqrt(mean_squared_error(y_true, y_pred))),
        "r2": float(r2_score(y_true, y_pred)) if len(y_true) > 1 else float("nan"),
    }
    per_class = {}
    if y_true.shape[1] > 1:
        mae = mean_absolute_error(y_true, y_pred, multioutput="raw_values")
        mse = mean_squared_error(y_true, y_pred, multioutput="raw_values")
        r2 = r2_score(y_true, y_pred, multioutput="raw_values")
        for i in range(y_true.shape[1]):
            per_class[str(i)] = {"mae": float(mae[i]), "rmse": float(np.sqrt(mse[i])), "r2": float(r2[i])}
    names = list(per_class) or ["0"]
    return Report("regression", metrics, per_class, None, names, len(y_true))


def _scores(entry):
    return {
        "precision": float(entry["precision"]),
        "recall": float(entry["recall"]),
        "f1": float(entry["f1-score"]),
        "support": int(entry["support"]),
    }
