import json

import keras
import numpy as np
import pytest

import finetunekit as fk


@pytest.mark.parametrize(
    "head",
    [
        fk.ClassificationHead(3, pooling="max", hidden_units=(8, 4), dropout=0.2),
        fk.ClassificationHead(4, multi_label=True, threshold=[0.1, 0.2, 0.3, 0.4]),
        fk.RegressionHead(units=2, pooling="flatten"),
    ],
    ids=["softmax", "multi_label", "regression"],
)
def test_head_config_and_save_roundtrip(head, tmp_path):
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(head)))
    rebuilt = keras.saving.deserialize_keras_object(config)
    assert type(rebuilt) is type(head)
    assert rebuilt.get_config() == head.get_config()
    inputs = keras.Input((3, 3, 5))
    model = keras.Model(inputs, head(inputs))
    x = np.random.default_rng(0).normal(size=(2, 3, 3, 5)).astype("float32")
    path = str(tmp_path / "head.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(model.predict(x, verbose=0), loaded.predict(x, verbose=0), atol=1e-6)


@pytest.mark.parametrize("pooling", ["avg", "max", "flatten", "none"])
def test_image_poolings(pooling):
    head = fk.ClassificationHead(3, pooling=pooling)
    features = np.random.default_rng(0).normal(size=(2, 2, 2, 4)).astype("float32")
    if pooling == "none":
        features = features.reshape(2, -1)
    out = keras.ops.convert_to_numpy(head(features))
    assert out.shape == (2, 3)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("pooling", ["cls", "mean", "max"])
def test_sequence_poolings_ignore_padding(pooling):
    from finetunekit.core.pooled import pool_features

    features = np.random.default_rng(0).normal(size=(1, 4, 3)).astype("float32")
    mask = np.array([[1, 1, 0, 0]], bool)
    padded = features.copy()
    padded[:, 2:] = 1000.0  # padding values must not leak into the pool
    pooled = keras.ops.convert_to_numpy(pool_features(padded, pooling, mask))
    expected = {
        "cls": features[:, 0],
        "mean": features[:, :2].mean(axis=1),
        "max": features[:, :2].max(axis=1),
    }[pooling]
    np.testing.assert_allclose(pooled, expected, rtol=1e-5)


def test_classification_targets_from_strings_and_ints():
    head = fk.ClassificationHead(3)
    y, names = head.encode_targets(["dog", "cat", "other", "cat"])
    assert names == ["cat", "dog", "other"]
    np.testing.assert_array_equal(y, [1, 0, 2, 0])
    y, names = head.encode_targets(np.array([0, 2, 1]))
    assert names is None and y.dtype == np.int32
    y, _ = head.encode_targets([b"cat", b"dog"], class_names=["cat", "dog", "other"])
    np.testing.assert_array_equal(y, [0, 1])
    assert head.decode(np.eye(3)[[2, 0]], ["a", "b", "c"]) == ["c", "a"]


@pytest.mark.parametrize(
    "labels,match",
    [
        ([0, 1, 3], "Labels out of range: found values from 0 to 3"),
        ([-1, 0, 1], "Labels out of range"),
        (["a", "b", "c", "d"], "hold 4 classes .* num_classes=3"),
        (["a", "b"], "hold 2 classes .* num_classes=3"),
        ([0.5, 1.0, 2.0], "non-integer floats.*RegressionHead"),
        (np.zeros((3, 3)), "one label per example"),
        ([0.0, np.nan, 1.0], "NaN"),
    ],
)
def test_classification_target_errors(labels, match):
    with pytest.raises(ValueError, match=match):
        fk.ClassificationHead(3).encode_targets(labels)


def test_unknown_string_label_against_known_names():
    with pytest.raises(ValueError, match="'bird'.*not among the known classes"):
        fk.ClassificationHead(2).encode_targets(["bird"], class_names=["cat", "dog"])


def test_multi_label_targets_and_decode():
    head = fk.ClassificationHead(3, multi_label=True, threshold=[0.5, 0.9, 0.5])
    y, names = head.encode_targets([["b", "a"], ["c"], []])
    assert names == ["a", "b", "c"]
    np.testing.assert_array_equal(y, [[1, 1, 0], [0, 0, 1], [0, 0, 0]])
    probs = np.array([[0.6, 0.8, 0.1], [0.1, 0.95, 0.7]])
    assert head.decode(probs, names) == [["a"], ["b", "c"]]
    with pytest.raises(ValueError, match=r"multi-hot matrix of shape \(n, 3\)"):
        head.encode_targets(np.array([0, 1, 2]))


def test_regression_targets():
    head = fk.RegressionHead()
    y, _ = head.encode_targets([1, 2.5])
    assert y.shape == (2, 1) and y.dtype == np.float32
    with pytest.raises(ValueError, match="needs numeric targets"):
        head.encode_targets(["cat", "dog"])
    with pytest.raises(ValueError, match="NaN or inf"):
        head.encode_targets([1.0, np.nan])
    with pytest.raises(ValueError, match=r"units=1 expects targets of shape"):
        head.encode_targets(np.zeros((2, 3)))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"num_classes": 1}, "num_classes` must be >= 2"),
        ({"num_classes": 3, "pooling": "mean2"}, 'Unknown pooling "mean2"'),
        ({"num_classes": 3, "dropout": 1.5}, "dropout"),
        ({"num_classes": 2, "multi_label": True, "threshold": [0.5]}, "one value per class"),
    ],
)
def test_head_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fk.ClassificationHead(**kwargs)


def test_output_layer_is_float32_under_mixed_policy():
    head = fk.ClassificationHead(2, hidden_units=(4,), dtype="mixed_float16")
    out = head(np.zeros((1, 2, 2, 3), "float16"))
    assert out.dtype == "float32"
    assert head.output_dense.compute_dtype == "float32"
