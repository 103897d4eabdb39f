"""The scikit-learn report sections the built-in heads share (classification, multi-label, regression).

Each head builds its own section of `fk.report` (`Head.report`) as a
`fk.Report` (`finetunekit.core.reports`).
"""

import numpy as np

from finetunekit.core.reports import Report


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
