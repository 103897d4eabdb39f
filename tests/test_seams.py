"""The seams of issue 8: sample weights on every path, class weights, fine_tune = fit + stages,
the backbone registry, head task methods, weight decay by rank, export options."""

import keras
import numpy as np
import pytest

import finetunekit as fk
from finetunekit.core.data.pipeline import split_indices
from tests.conftest import tiny_cnn, tiny_tuner, write_images
from tests.harness import tiny_hub_resnet
from tests.test_text import TEXTS, text_tuner


def _loss(result):
    return result[0] if isinstance(result, list) else result


def _weights_are_honoured(evaluate, y, flip):
    """Changing the labels of zero-weight examples leaves the weighted loss unchanged."""
    weights = np.zeros(len(y), "float32")
    weights[:2] = 1.0
    base = _loss(evaluate(y, weights))
    changed = _loss(evaluate(flip(y), weights))
    unweighted = _loss(evaluate(flip(y), None))
    assert base == pytest.approx(changed, rel=1e-5)
    assert unweighted != pytest.approx(changed, rel=1e-3)


def _flip_after_two(y):
    y = np.array(y)
    y[2:] = 1 - y[2:]
    return y


def test_sample_weight_on_image_arrays_and_paths(tmp_path):
    ft = tiny_tuner()
    ft.compile()
    x = np.random.default_rng(0).integers(0, 255, (8, 16, 16, 3)).astype("uint8")
    y = np.array([0, 1] * 4)
    _weights_are_honoured(lambda yy, w: ft.evaluate(x, yy, sample_weight=w, verbose=0), y,
                          _flip_after_two)
    root = write_images(str(tmp_path / "imgs"), {"a": 4, "b": 4}, size=(16, 16))
    paths = sorted(str(p) for p in (tmp_path / "imgs").rglob("*.*"))
    _weights_are_honoured(lambda yy, w: ft.evaluate(paths, yy, sample_weight=w, verbose=0), y,
                          _flip_after_two)
    assert root


def test_sample_weight_on_texts_lists_and_datasets():
    import tensorflow as tf

    ft = text_tuner()
    ft.compile()
    texts, y = TEXTS[:8], np.array([0, 1] * 4)
    _weights_are_honoured(lambda yy, w: ft.evaluate(texts, yy, sample_weight=w, verbose=0), y,
                          _flip_after_two)

    def on_dataset(yy, w):
        parts = (texts, yy) if w is None else (texts, yy, w)
        return ft.evaluate(tf.data.Dataset.from_tensor_slices(parts), verbose=0)

    _weights_are_honoured(on_dataset, y, _flip_after_two)


def test_sample_weight_follows_the_validation_split(fit_kwargs):
    x = np.random.default_rng(0).integers(0, 255, (10, 16, 16, 3)).astype("uint8")
    y = np.array([0, 1] * 5)
    w = np.arange(10, dtype="float32")
    ft = tiny_tuner()
    ft.fit(x, y, sample_weight=w, validation_split=0.2, seed=0, epochs=1, verbose=0,
           cache_features=False)
    train_index, val_index = split_indices(10, 0.2, y, 0)
    np.testing.assert_array_equal(fit_kwargs["sample_weight"], w[train_index])
    np.testing.assert_array_equal(fit_kwargs["validation_data"][2], w[val_index])
    with pytest.raises(ValueError, match="sample_weight` has 3 values but the data has 10"):
        ft.fit(x, y, sample_weight=w[:3], epochs=1, verbose=0)


def test_balanced_class_weight_ignores_validation_data(tmp_path, fit_kwargs):
    train = write_images(str(tmp_path / "train"), {"a": 6, "b": 2}, size=(16, 16))
    val = write_images(str(tmp_path / "val"), {"a": 1, "b": 7}, size=(16, 16), seed=1)
    ft = tiny_tuner()
    ft.fit(train, validation_data=val, class_weight="balanced", epochs=1, verbose=0)
    assert fit_kwargs["class_weight"] == pytest.approx({0: 8 / (2 * 6), 1: 8 / (2 * 2)})


def test_class_weight_by_class_name(fit_kwargs):
    x = np.zeros((4, 16, 16, 3), "uint8")
    ft = tiny_tuner()
    ft.fit(x, ["cat", "dog", "cat", "dog"], class_weight={"dog": 5.0, "cat": 1}, epochs=1,
           verbose=0)
    assert fit_kwargs["class_weight"] == {1: 5.0, 0: 1.0}
    with pytest.raises(ValueError, match="class_weight names class 'bird'"):
        ft.fit(x, ["cat", "dog", "cat", "dog"], class_weight={"bird": 2.0}, epochs=1, verbose=0)


def test_fine_tune_takes_fit_arguments_and_caches_both_stages(monkeypatch, tmp_path):
    from finetunekit.training import caching

    calls = []
    real = caching.fit_on_cached_features
    monkeypatch.setattr(caching, "fit_on_cached_features",
                        lambda *a, **k: calls.append(k["epochs"]) or real(*a, **k))
    root = write_images(str(tmp_path / "data"), {"a": 4, "b": 4}, size=(16, 16))
    ft = tiny_tuner()
    history = ft.fine_tune(root, epochs=3, freeze_epochs=2, unfreeze=1, on_bad_image="skip",
                           seed=0, cache_features="auto", verbose=0)
    # the head-only stage trains on cached features, the unfreeze=1 stage on the
    # cached activations at the freezing boundary (boundary caching)
    assert calls == [2, 3]
    assert history.epoch == [0, 1, 2] and ft.unfrozen_blocks


def test_fine_tune_resumes_without_repeating_the_head_stage(tmp_path, capsys):
    x = np.random.default_rng(0).integers(0, 255, (8, 16, 16, 3)).astype("uint8")
    y = np.array([0, 1] * 4)
    ft = tiny_tuner()
    ft.fine_tune(x, y, epochs=2, freeze_epochs=1, unfreeze=1, checkpoint_dir=str(tmp_path))
    out = capsys.readouterr().out
    assert "epochs 1-1 train the head only" in out and "epochs 2-2 train the head and" in out
    assert (tmp_path / "head_only.weights.h5").exists()
    rerun = tiny_tuner()
    history = rerun.fine_tune(x, y, epochs=2, freeze_epochs=1, unfreeze=1,
                              checkpoint_dir=str(tmp_path), verbose=0)
    assert history.epoch == [1]  # the finished head stage was loaded, not trained again
    np.testing.assert_allclose(rerun.head.get_weights()[0].shape, ft.head.get_weights()[0].shape)


def test_backbone_registry_and_unknown_names():
    kinds = fk.backbones.backbone_kinds()
    built_in = ["applications", "keras_hub_image", "text_encoder", "keras_model"]
    # keras-hub image models and preset folders before the text kind and plain Keras models
    assert [k.name for k in kinds if k.name in built_in] == built_in
    assert fk.backbones.KerasHubImageBackbone.matches(tiny_hub_resnet())
    assert not fk.backbones.KerasHubImageBackbone.matches(tiny_cnn())
    assert fk.backbones.ApplicationsBackbone.matches("resnet50")
    assert not fk.backbones.TextEncoderBackbone.matches(tiny_cnn())
    assert fk.backbones.KerasModelBackbone.matches(tiny_cnn())
    with pytest.raises(ValueError, match='Did you mean "ResNet50"'):
        fk.FineTuner("resnet5", fk.ClassificationHead(2), weights=None)
    with pytest.raises(ValueError, match="bert_tiny_en_uncased"):
        fk.FineTuner("bert_tiny_en_uncase", fk.ClassificationHead(2))


def test_pyramid_features_of_a_table_backbone():
    kind = fk.backbones.resolve_backbone(
        "resnet50", weights=None, input_shape=(64, 64, 3), preprocessing="auto", policy="float32"
    )
    inputs, outputs = kind.build(("features", "pyramid"))
    shapes = {level: tuple(t.shape[1:3]) for level, t in outputs["pyramid"].items()}
    assert shapes == {"P2": (16, 16), "P3": (8, 8), "P4": (4, 4), "P5": (2, 2)}
    names = {level: layer.name for level, layer in fk.backbones.pyramid_layers(kind.model, 64).items()}
    assert names["P5"] == "conv5_block3_out" and names["P3"] == "conv3_block4_out"
    text = text_tuner().backbone_kind
    with pytest.raises(ValueError, match="pyramid"):
        text.build(("features", "pyramid"))


def test_task_methods_come_from_the_head():
    import finetunekit as fk

    ner = text_tuner(head=fk.TokenClassificationHead(3))
    assert "predict_entities" in dir(ner) and callable(ner.evaluate_entities)
    with pytest.raises(AttributeError, match="predict_entities"):
        _ = text_tuner().predict_entities
    with pytest.raises(ValueError, match="Wrap it in a list"):
        ner.predict_entities("a string")


def test_head_argument_errors():
    with pytest.raises(ValueError, match="does not pool; remove pooling="):
        fk.TokenClassificationHead(3, pooling="mean")
    with pytest.raises(ValueError, match='pooling="flatten" needs features of a fixed size'):
        text_tuner(head=fk.ClassificationHead(2, pooling="flatten"))
    with pytest.raises(ValueError, match="whole number"):
        fk.ClassificationHead(2.7)
    with pytest.raises(ValueError, match="must be unique"):
        tiny_tuner(class_names=["a", "a"])


@keras.saving.register_keras_serializable(package="finetunekit_tests")
class _Scaled(keras.layers.Layer):
    """Multiplies by a 1-D `scale` weight times 0: its gradient is always zero."""

    def build(self, input_shape):
        self.scale = self.add_weight(name="scale", shape=(input_shape[-1],), initializer="ones")

    def call(self, x):
        return x + 0.0 * self.scale


def test_weight_decay_skips_weights_of_rank_one():
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = _Scaled(name="norm")(x)
    ft = fk.FineTuner(keras.Model(inputs, x), fk.ClassificationHead(2), unfreeze="all",
                      preprocessing="zero_one")
    ft.compile(learning_rate=0.1, weight_decay=0.5)
    data = np.random.default_rng(0).integers(0, 255, (4, 16, 16, 3)).astype("uint8")
    ft.fit(data, [0, 1, 0, 1], epochs=2, verbose=0)
    np.testing.assert_array_equal(ft.backbone.get_layer("norm").scale.numpy(), 1.0)


def test_export_refuses_options_it_would_ignore(tmp_path):
    with pytest.raises(ValueError, match="input_signature apply to Keras' own export formats"):
        tiny_tuner().export(str(tmp_path / "out"), input_signature=[None])
