"""Evaluation reports (scikit-learn), pictures, and class_weight="balanced"."""

import json

import numpy as np
import pytest
from sklearn.metrics import (
    classification_report,
    confusion_matrix,
    f1_score,
    mean_absolute_error,
    r2_score,
)

import finetunekit as fk
from tests.conftest import tiny_tuner, write_images


def _data(n=30, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = (rng.integers(0, 80, (n, 16, 16, 3)) + 80 * y[:, None, None, None]).astype("uint8")
    return x, y


def _check_png(path, min_size=(200, 150)):
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size[0] >= min_size[0] and image.size[1] >= min_size[1]
        pixels = np.asarray(image.convert("RGB"), dtype=float)
    assert pixels.std() > 0, "blank picture"


def test_classification_report_matches_sklearn():
    x, y = _data()
    names = np.array(["cat", "dog", "owl"])
    ft = tiny_tuner(num_classes=3)
    ft.fit(x, names[y], epochs=2, batch_size=8, verbose=0)
    report = ft.evaluate(x, names[y], report=True)
    assert isinstance(report, fk.Report) and report.task == "classification"
    y_pred = np.argmax(ft.predict(x, verbose=0), axis=-1)
    expected = classification_report(
        y, y_pred, labels=[0, 1, 2], target_names=list(names), output_dict=True, zero_division=0
    )
    assert report.metrics["accuracy"] == pytest.approx(np.mean(y == y_pred))
    assert report.metrics["macro_f1"] == pytest.approx(expected["macro avg"]["f1-score"])
    assert report.metrics["weighted_recall"] == pytest.approx(expected["weighted avg"]["recall"])
    assert report.metrics["macro_f1"] == pytest.approx(
        f1_score(y, y_pred, average="macro", zero_division=0)
    )
    for name in names:
        assert report.per_class[name]["precision"] == pytest.approx(expected[name]["precision"])
        assert report.per_class[name]["support"] == 10
    np.testing.assert_array_equal(report.confusion_matrix, confusion_matrix(y, y_pred))
    assert report.class_names == ["cat", "dog", "owl"]
    # fk.report is the same thing
    assert fk.report(ft, x, names[y]).to_dict() == report.to_dict()


def test_report_str_and_to_dict_are_plain():
    x, y = _data(12)
    ft = tiny_tuner(num_classes=3, class_names=["a", "b", "c"])
    report = fk.report(ft, x, y)
    text = str(report)
    for word in ("precision", "recall", "f1", "support", "macro_f1", "confusion matrix"):
        assert word in text
    assert all(name in text for name in ("a", "b", "c"))
    data = report.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert np.sum(data["confusion_matrix"]) == 12
    assert repr(report).startswith("<Report classification: accuracy=")
    assert report["accuracy"] == data["metrics"]["accuracy"]


def test_report_on_folder_and_dataset(tmp_path):
    import tensorflow as tf

    folder = write_images(str(tmp_path / "data"), {"a": 4, "b": 3, "c": 2}, size=(16, 16))
    ft = tiny_tuner(num_classes=3)
    report = ft.evaluate(folder, report=True)
    assert report.class_names == ["a", "b", "c"]
    assert [report.per_class[n]["support"] for n in "abc"] == [4, 3, 2]
    x, y = _data(10)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(10, seed=1).batch(4)
    from_dataset = fk.report(ft, ds)
    from_arrays = fk.report(ft, x, y)
    np.testing.assert_array_equal(from_dataset.confusion_matrix, from_arrays.confusion_matrix)


def test_multi_label_report():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (12, 16, 16, 3)).astype("uint8")
    labels = [["sea", "sky"], ["sky"], [], ["sand"]] * 3
    ft = tiny_tuner(fk.ClassificationHead(3, multi_label=True))
    ft.fit(x, labels, epochs=1, verbose=0)
    report = ft.evaluate(x, labels, report=True)
    assert report.task == "multi_label"
    y_true, _ = ft.head.encode_targets(labels, ft.class_names)
    y_pred = (ft.predict(x, verbose=0) >= 0.5).astype(int)
    for average in ("micro", "macro"):
        assert report.metrics[f"{average}_f1"] == pytest.approx(
            f1_score(y_true, y_pred, average=average, zero_division=0)
        )
    assert set(report.per_class) == {"sand", "sea", "sky"}
    assert report.confusion_matrix.shape == (3, 2, 2)
    assert "subset_accuracy" in report.metrics and "hamming_loss" in report.metrics


def test_regression_report():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (10, 16, 16, 3)).astype("uint8")
    y = rng.normal(size=(10, 2)).astype("float32")
    ft = tiny_tuner(fk.RegressionHead(units=2))
    report = ft.evaluate(x, y, report=True)
    pred = ft.predict(x, verbose=0)
    assert report.task == "regression" and report.confusion_matrix is None
    assert report.metrics["mae"] == pytest.approx(mean_absolute_error(y, pred), rel=1e-5)
    assert report.metrics["rmse"] == pytest.approx(np.sqrt(np.mean((y - pred) ** 2)), rel=1e-5)
    assert report.metrics["r2"] == pytest.approx(r2_score(y, pred), rel=1e-5)
    assert set(report.per_class) == {"0", "1"}
    assert "rmse" in str(report)
    with pytest.raises(ValueError, match="regression report has no confusion matrix"):
        report.plot_confusion_matrix("never.png")


def test_plot_history_and_confusion_matrix_png(tmp_path):
    x, y = _data(24)
    ft = tiny_tuner(num_classes=3)
    history = ft.fit(x, y, epochs=2, batch_size=8, validation_split=0.25, verbose=0)
    path = fk.plot_history(history, tmp_path / "curves.png")
    _check_png(path, min_size=(400, 200))
    _check_png(fk.plot_history(history.history, tmp_path / "curves2.png"))
    report = fk.report(ft, x, y)
    _check_png(report.plot_confusion_matrix(tmp_path / "confusion.png"), min_size=(150, 150))
    _check_png(report.plot_confusion_matrix(tmp_path / "norm.png", normalize=True), (150, 150))
    with pytest.raises(ValueError, match="plot_history needs the History"):
        fk.plot_history({}, tmp_path / "empty.png")


def test_multi_label_confusion_matrix_png(tmp_path):
    x = np.random.default_rng(0).integers(0, 255, (6, 16, 16, 3)).astype("uint8")
    ft = tiny_tuner(fk.ClassificationHead(3, multi_label=True), class_names=["a", "b", "c"])
    report = fk.report(ft, x, [["a"], ["b", "c"], []] * 2)
    _check_png(report.plot_confusion_matrix(tmp_path / "ml.png"))


def test_missing_matplotlib_gives_install_hint(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(ImportError, match=r'pip install "finetunekit\[plot\]"'):
        fk.plot_history({"loss": [1.0, 0.5]}, tmp_path / "x.png")


def test_balanced_class_weight_matches_sklearn(fit_kwargs):
    from sklearn.utils.class_weight import compute_class_weight

    rng = np.random.default_rng(0)
    y = np.array([0] * 20 + [1] * 6 + [2] * 2)
    x = rng.integers(0, 255, (len(y), 16, 16, 3)).astype("uint8")
    expected = compute_class_weight("balanced", classes=np.array([0, 1, 2]), y=y)
    ft = tiny_tuner(num_classes=3)
    ft.fit(x, y, epochs=1, batch_size=8, class_weight="balanced", verbose=0)
    weights = fit_kwargs["class_weight"]
    assert sorted(weights) == [0, 1, 2]
    np.testing.assert_allclose([weights[i] for i in range(3)], expected)
    assert weights[2] > weights[1] > weights[0]


def test_balanced_class_weight_on_folder_uses_training_split(tmp_path, fit_kwargs):
    from sklearn.utils.class_weight import compute_class_weight

    folder = write_images(str(tmp_path / "data"), {"a": 9, "b": 3, "c": 3}, size=(16, 16))
    ft = tiny_tuner(num_classes=3)
    ft.fit(folder, epochs=1, class_weight="balanced", validation_split=0.2, seed=0, verbose=0)
    train = ft.prepare(folder, validation_split=0.2, seed=0).train_targets
    assert len(train) == 12
    expected = compute_class_weight("balanced", classes=np.unique(train), y=train)
    np.testing.assert_allclose([fit_kwargs["class_weight"][i] for i in range(3)], expected)


@pytest.mark.parametrize(
    "head,class_weight,match",
    [
        (fk.RegressionHead, "balanced", "needs a single-label ClassificationHead"),
        (lambda: fk.ClassificationHead(3, multi_label=True), "balanced", "multi_label=True"),
        (lambda: fk.ClassificationHead(3), "equal", 'must be a dict .* or "balanced"'),
    ],
)
def test_balanced_class_weight_errors(head, class_weight, match):
    x, y = _data(6)
    targets = {"RegressionHead": y.astype("float32")}.get(type(head()).__name__, y)
    if getattr(head(), "multi_label", False):
        targets = np.eye(3)[y]
    with pytest.raises(ValueError, match=match):
        tiny_tuner(head()).fit(x, targets, epochs=1, class_weight=class_weight, verbose=0)
