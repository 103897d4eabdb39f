"""Audio: the in-model featurizer, readers, augmentation, the Whisper kind and speech to text."""

import json

import keras
import numpy as np
import pytest

import finetunekit as fk
from finetunekit.families.speech.augmentation import SpecMask, WaveformAugmentation
from finetunekit.families.speech.layers import AudioFeaturizer
from tests.audio_fixtures import WORDS, tiny_tokenizer, tiny_whisper, tone, tone_files, write_wav


def test_featurizer_matches_keras_hub_whisper_converter():
    import keras_hub

    clip = tone(440, seconds=1.0)
    reference = np.asarray(keras_hub.layers.WhisperAudioConverter(max_audio_length=1)(clip))
    features, mask = AudioFeaturizer()(clip[None, :, None], np.array([16000]), np.array([16000]))
    np.testing.assert_allclose(np.asarray(features)[0], reference, atol=1e-4)
    assert np.asarray(mask).all()


def test_featurizer_resamples_mixes_to_mono_and_masks_padding():
    layer = AudioFeaturizer()
    at_16k = tone(1000, seconds=0.5, noise=0.0)
    at_8k = tone(1000, seconds=0.5, rate=8000, noise=0.0)
    reference, _ = layer(at_16k[None, :, None], np.array([8000]), np.array([16000]))
    resampled, _ = layer(at_8k[None, :, None], np.array([4000]), np.array([8000]))
    peak = np.asarray(reference)[0, 10:40].mean(0).argmax()
    assert abs(int(np.asarray(resampled)[0, 10:40].mean(0).argmax()) - int(peak)) <= 1
    stereo = np.stack([at_16k, at_16k], -1)[None]
    padded = np.concatenate([stereo, np.zeros((1, 8000, 2), "float32")], axis=1)
    features, mask = layer(padded, np.array([8000]), np.array([16000]))
    assert np.asarray(mask)[0].sum() == 50 and np.asarray(mask).shape[1] == 100
    np.testing.assert_allclose(np.asarray(features)[0, :48], np.asarray(reference)[0, :48], atol=1e-4)


def test_augmentation_layers_train_only_and_round_trip():
    audio = np.tile(tone(300)[None, :, None], (2, 1, 1))
    wave = WaveformAugmentation(noise=0.1, gain_db=6, time_shift=0.1, seed=1)
    np.testing.assert_array_equal(np.asarray(wave(audio)), audio)
    assert not np.allclose(np.asarray(wave(audio, training=True)), audio)
    mask = SpecMask(seed=1)
    features = np.random.default_rng(0).random((2, 50, 80)).astype("float32")
    assert (np.asarray(mask(features, training=True)) == features.min()).any()
    for layer in (wave, mask):
        rebuilt = type(layer).from_config(json.loads(json.dumps(layer.get_config())))
        assert rebuilt.get_config() == layer.get_config()
    layers = fk.layers.build_augmentation({"noise": 0.1, "gain_db": 6, "time_shift": 0.1,
                                           "spec_mask": True})
    assert [layer.stage for layer in layers] == ["waveform", "spectrogram"]


def test_readers_folder_and_manifests(tmp_path):
    for label, frequency in (("low", 300), ("high", 2000)):
        for i in range(2):
            write_wav(str(tmp_path / "kws" / label / f"{i}.wav"), tone(frequency, seed=i))
    ft = fk.FineTuner(backbone=tiny_whisper(), head=fk.ClassificationHead(2, pooling="mean"),
                      augment={"noise": 0.1, "spec_mask": True})
    history = ft.fit(str(tmp_path / "kws"), epochs=1, batch_size=2, verbose=0)
    assert ft.class_names == ["high", "low"] and np.isfinite(history.history["loss"]).all()
    rows = [{"path": f"kws/low/{i}.wav", "text": "yes"} for i in range(2)]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (tmp_path / "m.csv").write_text("audio,transcript\n" + "\n".join(
        f"{r['path']},{r['text']}" for r in rows))
    from finetunekit.families.speech.readers import audio_sources

    for manifest in ("m.jsonl", "m.csv"):
        clips, rates, texts, _ = audio_sources(str(tmp_path / manifest))
        assert texts == ["yes", "yes"] and rates == [16000, 16000] and clips[0].shape[1] == 1


def test_batches_are_padded_to_their_longest_clip(tmp_path):
    paths, labels = tone_files(str(tmp_path), n=4)
    ft = fk.FineTuner(backbone=tiny_whisper(), head=fk.ClassificationHead(2, pooling="mean"))
    batches = list(ft.prepare(paths, labels, batch_size=2).train.x)
    lengths = [int(b[0]["audio"].shape[1]) for b in batches]
    assert lengths == [4000, 4800]  # 0.2/0.25 s and 0.3/0.2 s clips, not 30 s


def test_decoder_trains_only_for_speech_to_text():
    kws = fk.FineTuner(backbone=tiny_whisper(), head=fk.ClassificationHead(2), unfreeze="all")
    trainable = {v.path for v in kws.backbone.trainable_variables}
    assert not any("decoder" in path for path in trainable) and trainable
    asr = fk.FineTuner(backbone=tiny_whisper(), preprocessor=tiny_tokenizer(),
                       head=fk.SpeechToTextHead(), unfreeze=1)
    assert asr.unfrozen_blocks == ["layer_1"]
    trainable = {v.path for v in asr.backbone.trainable_variables}
    assert any("transformer_decoder_layer_1" in p for p in trainable)
    assert any("transformer_encoder_layer_1" in p for p in trainable)
    assert not any("layer_0" in p for p in trainable)


def test_predict_text_and_report_before_training(tmp_path):
    paths, _ = tone_files(str(tmp_path), n=3)
    asr = fk.FineTuner(backbone=tiny_whisper(), preprocessor=tiny_tokenizer(),
                       head=fk.SpeechToTextHead(max_new_tokens=3))
    greedy = asr.predict_text(paths, batch_size=2)
    assert len(greedy) == 3 and all(isinstance(t, str) for t in greedy)
    assert len(asr.predict_text(paths, num_beams=2)) == 3
    report = asr.evaluate(paths, ["yes", "no", "up"], report=True)
    assert set(report.metrics) == {"wer", "cer", "exact_match", "wer_unnormalized"}
    assert report.num_examples == 3
    assert [e["hypothesis"] for e in report.examples] == greedy


@pytest.mark.slow
def test_speech_to_text_learns_transcribes_reports_and_reloads(tmp_path):
    paths, labels = tone_files(str(tmp_path), n=4, vary=False)
    texts = [WORDS[i] for i in labels]  # "yes" for low tones, "no" for high ones
    asr = fk.FineTuner(backbone=tiny_whisper(), preprocessor=tiny_tokenizer(),
                       head=fk.SpeechToTextHead(max_new_tokens=5), unfreeze="all")
    asr.compile(learning_rate=1e-2)
    asr.fit(paths, texts, epochs=40, batch_size=2, verbose=0)
    assert asr.predict_text(paths) == texts
    assert asr.predict_text(paths, num_beams=2) == texts
    report = asr.evaluate(paths, texts, report=True)
    assert report.metrics["wer"] == 0.0 and report.metrics["cer"] == 0.0
    assert report.examples[0] == {"reference": "yes", "hypothesis": "yes"}
    asr.save(str(tmp_path / "asr.keras"))
    assert fk.load(str(tmp_path / "asr.keras")).predict_text(paths) == texts


def test_local_preset_folder(tmp_path):
    tiny_whisper().save_to_preset(str(tmp_path / "preset"))
    tiny_tokenizer().save_to_preset(str(tmp_path / "preset"))
    kind = fk.backbones.resolve_backbone(str(tmp_path / "preset"))
    assert kind.name == "audio" and kind.tokenizer is not None and kind.max_seconds == 2.0
    keras.backend.clear_session()


def test_whisper_presets_resolve_to_the_audio_kind_before_text():
    from finetunekit.families.speech.kind import is_audio_preset

    assert is_audio_preset("whisper_tiny_en") and not is_audio_preset("bert_tiny_en_uncased")
    kinds = [kind.name for kind in fk.backbones.backbone_kinds()]
    assert kinds.index("audio") < kinds.index("text_encoder")


@pytest.mark.parametrize("bad", [0, 2.5, True])
def test_speech_head_checks_arguments(bad):
    with pytest.raises(ValueError, match="must be an int >= 1"):
        fk.SpeechToTextHead(num_beams=bad)


def test_lora_trains_only_lora_weights():
    asr = fk.FineTuner(backbone=tiny_whisper(), preprocessor=tiny_tokenizer(),
                       head=fk.SpeechToTextHead(max_new_tokens=2), lora_rank=2)
    trainable = [v.path for v in asr.backbone.trainable_variables]
    assert trainable and all("lora" in p for p in trainable)
    assert any("decoder" in p for p in trainable) and asr.unfrozen_blocks == ["lora"]
    assert json.loads(json.dumps(asr.get_config()))["lora_rank"] == 2
    kws = fk.FineTuner(backbone=tiny_whisper(), head=fk.ClassificationHead(2), lora_rank=2)
    trainable = [v.path for v in kws.backbone.trainable_variables]
    assert trainable and not any("decoder" in p for p in trainable)


@pytest.mark.slow
def test_lora_fit_save_and_load(tmp_path):
    paths, labels = tone_files(str(tmp_path), n=4, vary=False)
    asr = fk.FineTuner(backbone=tiny_whisper(), preprocessor=tiny_tokenizer(),
                       head=fk.SpeechToTextHead(max_new_tokens=2), lora_rank=2)
    asr.fit(paths, [WORDS[i] for i in labels], epochs=1, batch_size=4, verbose=0)
    asr.save(str(tmp_path / "lora.keras"))
    loaded = fk.load(str(tmp_path / "lora.keras"))
    assert loaded.predict_text(paths) == asr.predict_text(paths)


def test_keras_saved_model_export_serves_raw_waveforms(tmp_path):
    import tensorflow as tf

    ft = fk.FineTuner(backbone=tiny_whisper(), head=fk.ClassificationHead(2, pooling="mean"))
    clips = [tone(300), tone(900, seconds=0.2)]
    expected = ft.predict(clips, sample_rate=16000, verbose=0)
    ft.export(str(tmp_path / "keras_served"), format="tf_saved_model")
    padded = np.zeros((2, 4800, 1), "float32")
    padded[0, :, 0], padded[1, :3200, 0] = clips[0], clips[1]
    loaded = tf.saved_model.load(str(tmp_path / "keras_served"))  # keep it: it owns the variables
    served = loaded.serve(
        {"audio": padded, "audio_length": np.array([4800, 3200], "int32"),
         "sample_rate": np.array([16000, 16000], "int32")})
    np.testing.assert_allclose(np.asarray(served), expected, atol=1e-5)
