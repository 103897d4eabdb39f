import keras
import numpy as np
import pytest

import finetunekit as fk
from finetunekit.training import caching
from tests.conftest import tiny_cnn, tiny_tuner


def _data(n=40, size=16, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.integers(0, 100, (n, size, size, 3)) + 150 * y[:, None, None, None]
    return x.astype("uint8"), y


def _tuner(pooling="avg", **kwargs):
    head = fk.ClassificationHead(2, hidden_units=(8,), dropout=0.0, pooling=pooling)
    return tiny_tuner(head, **kwargs)


def _train_twice(ft, fit_args, fit_kwargs):
    """Trains from the same start with and without the cache; returns both head weights."""
    start = ft.get_weights()
    ft.initial_head = [w.copy() for w in ft.head.get_weights()]
    results = []
    for cache in (False, True):
        ft.set_weights(start)
        ft.compile(learning_rate=1e-2)
        history = ft.fit(*fit_args, cache_features=cache, verbose=0, **fit_kwargs)
        assert hasattr(history, "feature_cache") is cache
        results.append(([w.copy() for w in ft.head.get_weights()], history))
    return results


@pytest.mark.parametrize("pooling", ["avg", "max", "flatten"])
def test_cached_head_equals_slow_head(pooling):
    x, y = _data()
    ft = _tuner(pooling=pooling)
    (slow, h_slow), (fast, h_fast) = _train_twice(
        ft, (x, y), dict(epochs=3, batch_size=8, shuffle=False, validation_data=(x[:10], y[:10]))
    )
    # Training moved the head away from its own starting weights (both paths alike).
    assert not np.allclose(slow[0], ft.initial_head[0], atol=1e-4)
    for a, b in zip(slow, fast, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert (
        sorted(h_slow.history)
        == sorted(h_fast.history)
        == [
            "accuracy",
            "loss",
            "val_accuracy",
            "val_loss",
        ]
    )
    np.testing.assert_allclose(h_slow.history["loss"], h_fast.history["loss"], rtol=1e-4)
    np.testing.assert_allclose(h_slow.history["val_loss"], h_fast.history["val_loss"], rtol=1e-4)
    assert h_fast.epoch == [0, 1, 2]
    assert h_fast.model is ft
    # The FineTuner itself carries the trained head.
    np.testing.assert_allclose(ft.predict(x[:4], verbose=0).sum(axis=1), 1.0, rtol=1e-5)


def test_cached_dataset_and_disk_spill_equal_slow():
    import tensorflow as tf

    x, y = _data(24)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(6)
    ft = _tuner()
    (slow, _), (fast, h) = _train_twice(ft, (ds,), dict(epochs=2, shuffle=False))
    for a, b in zip(slow, fast, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert h.feature_cache["examples"] == 24 and not h.feature_cache["on_disk"]
    # cache_memory_budget=0 puts every feature on disk (np.memmap); same result.
    start_weights = ft.get_weights()
    ft.set_weights(start_weights)
    (slow, _), (fast, h) = _train_twice(
        ft, (x, y), dict(epochs=2, batch_size=6, shuffle=False, cache_memory_budget=0)
    )
    assert h.feature_cache["on_disk"]
    for a, b in zip(slow, fast, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_auto_caches_only_when_applicable(tmp_path):
    x, y = _data(16)
    ft = _tuner()
    ft.compile()
    assert hasattr(ft.fit(x, y, epochs=1, verbose=0), "feature_cache")  # default "auto"
    ft.set_unfreeze("all")
    ft.compile()
    assert not hasattr(ft.fit(x, y, epochs=1, verbose=0), "feature_cache")
    with pytest.raises(ValueError, match="backbone trains"):
        ft.fit(x, y, epochs=1, verbose=0, cache_features=True)
    augmented = _tuner(augment={"horizontal_flip": True})
    augmented.compile()
    assert not hasattr(augmented.fit(x, y, epochs=1, verbose=0), "feature_cache")
    with pytest.raises(ValueError, match="cache_augmented_copies"):
        augmented.fit(x, y, epochs=1, verbose=0, cache_features=True)
    with pytest.raises(ValueError, match="cache_features"):
        ft.fit(x, y, cache_features="yes")


def test_augmented_copies_and_callbacks():
    x, y = _data(16)
    ft = _tuner(augment={"horizontal_flip": True})
    ft.compile(learning_rate=1e-2)
    seen = []

    class Recorder(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append((epoch, self.model is ft, sorted(logs)))

    stop = keras.callbacks.EarlyStopping(monitor="loss", patience=0, min_delta=10.0)
    history = ft.fit(
        x,
        y,
        epochs=5,
        batch_size=4,
        cache_augmented_copies=2,
        callbacks=[Recorder(), stop],
        verbose=0,
    )
    assert history.feature_cache["copies"] == 2
    assert seen[0] == (0, True, ["accuracy", "loss"])
    assert len(history.epoch) == len(seen) == 2  # EarlyStopping on the FineTuner stops the head


def test_custom_head_caches_raw_features():
    class MyHead(fk.ClassificationHead):
        def call(self, outputs, training=None):
            return super().call(outputs, training=training)

    x, y = _data(16)
    ft = fk.FineTuner(backbone=tiny_cnn(), head=MyHead(2), preprocessing="zero_one")
    ft.compile()
    history = ft.fit(x, y, epochs=1, verbose=0)
    assert history.feature_cache["feature_shape"] == (8, 8, 8)


def _text_tuner_without_dropout(head):
    import keras_hub

    from tests.test_text import tiny_bert

    backbone, preprocessor = tiny_bert()
    backbone = keras_hub.models.BertBackbone.from_config({**backbone.get_config(), "dropout": 0.0})
    return fk.FineTuner(backbone=backbone, preprocessor=preprocessor, head=head)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_frozen_text_encoder_trains_its_head_on_cached_features(pooling):
    # The cache computes features once in inference mode; an encoder without
    # dropout gives the same features in training, so both runs must agree.
    from tests.test_text import TEXTS

    texts = list(TEXTS) * 2
    labels = np.arange(len(texts)) % 2
    head = fk.ClassificationHead(2, hidden_units=(8,), dropout=0.0, pooling=pooling)
    ft = _text_tuner_without_dropout(head)
    start, initial = ft.get_weights(), [w.copy() for w in ft.head.get_weights()]
    results = []
    for cache in (False, True):
        ft.set_weights(start)
        ft.compile(learning_rate=1e-2)
        history = ft.fit(texts, labels, epochs=2, batch_size=4, shuffle=False, verbose=0,
                         validation_data=(texts[:4], labels[:4]), cache_features=cache)
        assert hasattr(history, "feature_cache") is cache
        results.append(([w.copy() for w in ft.head.get_weights()], history.history))
    (slow, h_slow), (fast, h_fast) = results
    assert not np.allclose(slow[0], initial[0])  # the head trained
    for a, b in zip(slow, fast, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(h_slow["val_loss"], h_fast["val_loss"], rtol=1e-4)


def test_text_lora_is_not_cached_and_says_why():
    from tests.test_text import TEXTS, text_tuner

    ft = text_tuner(lora_rank=2)
    reason = ft.backbone_kind.cache_blocker()
    assert reason == "LoRA adapters in the encoder train"
    labels = np.arange(len(TEXTS)) % 2
    history = ft.fit(list(TEXTS), labels, epochs=1, batch_size=4, verbose=0)
    assert not hasattr(history, "feature_cache")


def test_boundary_cache_trains_the_unfrozen_block_like_the_full_model():
    # unfreeze=1 on tiny_cnn: block2 and the head train on cached block1 activations.
    x, y = _data(24)
    ft = _tuner()
    ft.set_unfreeze(1)
    block2 = ft.backbone.get_layer("block2_conv")
    start = ft.get_weights()
    initial = [w.copy() for w in block2.get_weights()]
    results = []
    for cache in (False, True):
        ft.set_weights(start)
        ft.compile(learning_rate=1e-2)
        history = ft.fit(x, y, epochs=3, batch_size=8, shuffle=False, verbose=0,
                         validation_data=(x[:8], y[:8]), cache_features=cache)
        assert hasattr(history, "feature_cache") is cache
        results.append(([w.copy() for w in block2.get_weights() + ft.head.get_weights()],
                        history.history))
    (slow, h_slow), (fast, h_fast) = results
    assert not np.allclose(slow[0], initial[0], atol=1e-4)  # the unfrozen block trained
    assert not np.allclose(fast[0], initial[0], atol=1e-4)
    for a, b in zip(slow, fast, strict=True):  # float16 storage of the boundary activations
        np.testing.assert_allclose(a, b, atol=2e-3, rtol=1e-2)
    np.testing.assert_allclose(h_slow["val_loss"], h_fast["val_loss"], rtol=1e-2)
    assert history.feature_cache["boundary"] is True
    assert history.feature_cache["feature_shape"] == (16, 16, 4)  # block1's output
    frozen = ft.backbone.get_layer("block1_conv").get_weights()
    np.testing.assert_array_equal(frozen[0], [w for w in start if w.shape == frozen[0].shape][0])


def test_boundary_cache_reasons_are_logged(caplog):
    x, y = _data(16)
    ft = _tuner(augment={"horizontal_flip": True})
    ft.set_unfreeze(1)
    ft.compile()
    with caplog.at_level("INFO", logger="finetunekit"):
        history = ft.fit(x, y, epochs=1, verbose=0)
    assert not hasattr(history, "feature_cache")
    assert "Training without the feature cache: augmentation is active" in caplog.text


def test_feature_extraction_traces_once_for_every_batch_size():
    from finetunekit.training.caching import feature_function

    x, _ = _data(n=13)
    ft = _tuner()
    extract = feature_function(ft, training=False)
    full, last = extract(x[:8]), extract(x[8:])  # a full batch, then the smaller last one
    assert full.shape[0] == 8 and last.shape[0] == 5
    assert extract.tracing_count() == 1


def test_cached_steps_run_an_epoch_per_call_unless_a_callback_watches_batches():
    x, y = _data(24)
    ft = _tuner()
    ft.compile(learning_rate=1e-2)
    calls = {}

    class Batches(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            calls.setdefault("batches", []).append(batch)

    class Epochs(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            # The optimizer's slots exist before the first (traced) step.
            calls["optimizer_built"] = ft.optimizer.built

    history = ft.fit(x, y, epochs=2, batch_size=4, callbacks=[Batches()], verbose=0)
    assert hasattr(history, "feature_cache")
    assert calls["batches"] == list(range(6)) * 2  # every step seen, as uncached
    guard = fk.callbacks.DivergenceGuard()
    assert caching._steps_per_call(ft, [guard, Epochs()], steps_per_epoch=6) == 6
    assert caching._steps_per_call(ft, [guard, Epochs()], steps_per_epoch=500) == 64
    assert caching._steps_per_call(ft, [Batches()], steps_per_epoch=6) == 1
    ft.compile(learning_rate=1e-2)
    ft.fit(x, y, epochs=1, batch_size=4, callbacks=[Epochs()], verbose=0)
    assert calls["optimizer_built"] is True


def test_cached_head_equals_slow_head_with_sample_or_class_weights():
    x, _ = _data(24)
    y = (np.arange(24) % 3 == 0).astype(int)  # imbalanced: 8 of class 1
    weights = np.linspace(0.5, 2.0, 24).astype("float32")
    ft = _tuner()
    common = dict(epochs=2, batch_size=5, shuffle=False)
    (plain, _), _ = _train_twice(ft, (x, y), common)
    for weighting in (dict(sample_weight=weights), dict(class_weight="balanced")):
        (slow, h_slow), (fast, h_fast) = _train_twice(ft, (x, y), dict(common, **weighting))
        for a, b in zip(slow, fast, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-5)
        np.testing.assert_allclose(h_slow.history["loss"], h_fast.history["loss"], rtol=1e-4)
        # The weights matter: without them the same start ends elsewhere.
        assert not np.allclose(plain[0], slow[0], atol=1e-5)
