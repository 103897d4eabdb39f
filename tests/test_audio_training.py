"""Audio on the training paths of other kinds: feature caching, checkpoint/resume, mixed precision."""

import keras
import numpy as np
import pytest

import finetunekit as fk
from tests.audio_fixtures import WORDS, tiny_tokenizer, tiny_whisper, tone_files


def _classifier(backbone=None, **kwargs):
    head = fk.ClassificationHead(2, hidden_units=(8,), dropout=0.0, pooling="mean")
    return fk.FineTuner(backbone=backbone or tiny_whisper(), head=head, **kwargs)


@pytest.mark.parametrize("family", ["whisper", "moonshine"])
def test_frozen_audio_encoder_trains_its_head_on_cached_features(family, tmp_path):
    # The cache runs the encoder once in inference mode; the tiny backbones have no
    # dropout, so training on the cache must match training through the encoder.
    from tests.audio_fixtures import tiny_moonshine

    paths, labels = tone_files(str(tmp_path), n=8)
    ft = _classifier(tiny_moonshine() if family == "moonshine" else None)
    start, initial = ft.get_weights(), [w.copy() for w in ft.head.get_weights()]
    encoder = [w.copy() for w in ft.backbone.get_weights()]
    results = []
    for cache in (False, True):
        ft.set_weights(start)
        ft.compile(learning_rate=1e-2)
        history = ft.fit(paths, labels, epochs=2, batch_size=4, shuffle=False, verbose=0,
                         validation_data=(paths[:4], labels[:4]), cache_features=cache)
        assert hasattr(history, "feature_cache") is cache
        results.append(([w.copy() for w in ft.head.get_weights()], history))
    (slow, h_slow), (fast, h_fast) = results
    assert not np.allclose(slow[0], initial[0])  # the head trained
    for a, b in zip(slow, fast, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(h_slow.history["loss"], h_fast.history["loss"], rtol=1e-4)
    np.testing.assert_allclose(h_slow.history["val_loss"], h_fast.history["val_loss"], rtol=1e-4)
    width = 16 if family == "moonshine" else 8
    assert h_fast.feature_cache["feature_shape"] == (width,)  # mean-pooled encoder features
    for a, b in zip(ft.backbone.get_weights(), encoder, strict=True):
        np.testing.assert_array_equal(a, b)  # the encoder stayed frozen


def test_audio_runs_that_cannot_be_cached_say_why(tmp_path):
    from finetunekit.training.caching import cache_blocker

    paths, labels = tone_files(str(tmp_path), n=4, vary=False)
    ft = _classifier(augment={"noise": 0.1})
    train = ft.prepare(paths, labels, batch_size=4).train
    assert cache_blocker(ft, train, 0).startswith("augmentation is active")
    assert cache_blocker(ft, train, 2) is None  # cache_augmented_copies=2 caches two passes
    assert _classifier(lora_rank=2).backbone_kind.cache_blocker() == (
        "LoRA adapters in the encoder train")
    # Speech to text: the row cache_features_for_speech_to_text in test_bad_inputs_audio.py.


def _tuner(task):
    if task == "classification":
        return _classifier(unfreeze=1)
    return fk.FineTuner(backbone=tiny_whisper(), preprocessor=tiny_tokenizer(),
                        head=fk.SpeechToTextHead(max_new_tokens=2), unfreeze=1)


class _Restored(keras.callbacks.Callback):
    """Records the model's weights when training (re)starts, after any restore."""

    def on_epoch_begin(self, epoch, logs=None):
        if not hasattr(self, "weights_at"):
            self.epoch, self.weights_at = epoch, [w.copy() for w in self.model.get_weights()]


@pytest.mark.parametrize(
    "task", ["classification", pytest.param("speech_to_text", marks=pytest.mark.slow)])
def test_audio_fit_resumes_from_its_checkpoint(task, tmp_path):
    from tests.test_bad_inputs_saving import Interrupt

    paths, labels = tone_files(str(tmp_path / "clips"), n=4, vary=False)
    targets = labels if task == "classification" else [WORDS[i] for i in labels]
    args = dict(epochs=2, batch_size=4, shuffle=False, verbose=0, checkpoint_dir=str(tmp_path))
    first = _tuner(task)
    start = [w.copy() for w in first.get_weights()]
    with pytest.raises(KeyboardInterrupt):  # a crash at the start of epoch 1
        first.fit(paths, targets, callbacks=[Interrupt(1)], **args)
    trained = first.get_weights()
    assert not all(np.allclose(a, b) for a, b in zip(trained, start, strict=True))
    resumed = _tuner(task)  # a new process builds a new model: other random weights
    restored = _Restored()
    history = resumed.fit(paths, targets, callbacks=[restored], **args)
    assert history.epoch == [1] and restored.epoch == 1  # epoch 0 is not trained again
    for a, b in zip(restored.weights_at, trained, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert np.isfinite(history.history["loss"]).all()


def test_mixed_precision_audio_classifier_trains_saves_and_loads(tmp_path):
    # mixed_float16 (with loss scaling) runs on a CPU too; tests/test_harness.py covers
    # mixed_bfloat16 for every backbone kind, audio included.
    paths, labels = tone_files(str(tmp_path), n=4, vary=False)
    ft = _classifier(mixed_precision="float16", unfreeze=1)
    assert ft.policy_name == "mixed_float16"
    assert ft.backbone.compute_dtype == "float16" and ft.backbone.variable_dtype == "float32"
    before = ft.backbone.trainable_variables[0].numpy().copy()
    history = ft.fit(paths, labels, epochs=1, batch_size=4, verbose=0, cache_features=False)
    assert np.isfinite(history.history["loss"]).all()
    assert not np.allclose(ft.backbone.trainable_variables[0].numpy(), before)
    probabilities = ft.predict(paths, verbose=0)
    assert probabilities.dtype == np.float32
    ft.save(str(tmp_path / "mixed.keras"))
    loaded = fk.load(str(tmp_path / "mixed.keras"))
    assert loaded.policy_name == "mixed_float16"
    np.testing.assert_allclose(loaded.predict(paths, verbose=0), probabilities, atol=1e-6)
