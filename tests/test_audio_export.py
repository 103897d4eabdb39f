"""ft.export for audio: a SavedModel and a TFLite file serving raw waveforms padded per batch.

Tolerances as in tests/test_export.py: the SavedModel runs the Keras graph
(atol=1e-5), TFLite its own kernels (atol=1e-4).
"""

import numpy as np
import pytest

import finetunekit as fk
from tests.audio_fixtures import tiny_whisper, tone


def _served_inputs(clips, samples):
    """One padded batch: `(audio, audio_length, sample_rate)` as the exported model takes them."""
    audio = np.zeros((len(clips), samples, 1), "float32")
    for i, clip in enumerate(clips):
        audio[i, : len(clip), 0] = clip
    lengths = np.array([len(c) for c in clips], "int32")
    return audio, lengths, np.full(len(clips), 16000, "int32")


def _classifier():
    ft = fk.FineTuner(backbone=tiny_whisper(), head=fk.ClassificationHead(2, pooling="mean"),
                      class_names=["high", "low"])
    clips = [tone(300), tone(900, seconds=0.2)]
    return ft, clips, ft.predict(clips, sample_rate=16000, verbose=0)


def test_saved_model_and_tflite_serve_raw_waveforms(tmp_path):
    import tensorflow as tf

    ft, clips, expected = _classifier()
    audio, lengths, rates = _served_inputs(clips, 4800)
    path = ft.export(str(tmp_path / "served"), format="saved_model")
    assert (tmp_path / "served" / "labels.txt").read_text().split() == ["high", "low"]
    served = tf.saved_model.load(path)  # keep a reference: it owns the variables
    np.testing.assert_allclose(served.serve(audio, lengths, rates).numpy(), expected, atol=1e-5)
    signature = served.signatures["serving_default"]
    out = list(signature(audio=audio, audio_length=lengths, sample_rate=rates).values())[0]
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-5)
    # Whisper's encoder attends to padded frames: a batch padded to another length gives
    # slightly other outputs, in Keras as served. Clips of one length need no padding.
    lite = ft.export(str(tmp_path / "lite"), format="tflite")
    assert lite.endswith("model.tflite") and (tmp_path / "lite" / "labels.txt").exists()
    runner = tf.lite.Interpreter(model_path=lite).get_signature_runner()
    out = list(runner(audio=audio, audio_length=lengths, sample_rate=rates).values())[0]
    np.testing.assert_allclose(out, expected, atol=1e-4)


@pytest.mark.slow
def test_trained_speech_to_text_served_writes_its_transcripts(tmp_path):
    # Slow: 40 epochs. The default run checks the TFLite refusal (tests/test_bad_inputs_audio.py).
    import tensorflow as tf

    from tests.audio_fixtures import WORDS, tiny_tokenizer, tone_files

    paths, labels = tone_files(str(tmp_path / "clips"), n=4, vary=False)
    texts = [WORDS[i] for i in labels]  # "yes" for low tones, "no" for high ones
    asr = fk.FineTuner(backbone=tiny_whisper(), preprocessor=tiny_tokenizer(),
                       head=fk.SpeechToTextHead(max_new_tokens=5), unfreeze="all")
    asr.compile(learning_rate=1e-2)
    asr.fit(paths, texts, epochs=40, batch_size=2, verbose=0)
    assert asr.predict_text(paths) == texts
    served = tf.saved_model.load(asr.export(str(tmp_path / "asr")))
    from finetunekit.families.speech.readers import read_audio

    clips = [read_audio(path)[0][:, 0] for path in paths]  # the WAV files, 0.2 s each
    out = served.serve(*_served_inputs(clips, 3200))
    assert [t.decode() for t in out["text"].numpy()] == texts


def test_moonshine_speech_to_text_served_matches_predict_text(tmp_path):
    """The exported greedy graph runs on the backbone family's own decoder (here Moonshine)."""
    import tensorflow as tf

    from tests.audio_fixtures import tiny_moonshine, tiny_moonshine_tokenizer

    asr = fk.FineTuner(backbone=tiny_moonshine(), preprocessor=tiny_moonshine_tokenizer(),
                       head=fk.SpeechToTextHead(max_new_tokens=4))
    clips = [tone(300, seconds=0.2), tone(900, seconds=0.2, seed=1)]
    expected = asr.predict_text(clips, sample_rate=16000)
    assert all(expected)  # random weights still write 4 tokens
    served = tf.saved_model.load(asr.export(str(tmp_path / "asr")))
    out = served.serve(*_served_inputs(clips, 3200))
    assert [t.decode().strip() for t in out["text"].numpy()] == expected
