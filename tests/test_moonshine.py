"""Moonshine as an audio backbone: in-model waveform converter, encoder/decoder parity with
keras-hub, classification and speech to text, freezing, LoRA, presets and save/load.

No real Moonshine weights exist offline: everything runs on a tiny random
`MoonshineBackbone` (hidden 16, one layer each) and a character SentencePiece
tokenizer trained here.
"""

import json

import keras
import numpy as np
import pytest

import finetunekit as fk
from tests.audio_fixtures import (
    WORDS,
    tiny_moonshine,
    tiny_moonshine_tokenizer,
    tone,
    tone_files,
)

tokenizer = tiny_moonshine_tokenizer


def features_model(ft):
    names = ("audio", "audio_length", "sample_rate")
    outputs = [ft.backbone_outputs["features"], ft.backbone_outputs["padding_mask"]]
    return keras.Model({n: ft.input[n] for n in names}, outputs)


def raw(clips, rate=16000):
    """Clips padded into one batch of model inputs."""
    longest = max(len(c) for c in clips)
    audio = np.zeros((len(clips), longest, 1), "float32")
    for i, clip in enumerate(clips):
        audio[i, : len(clip), 0] = clip
    return {"audio": audio, "audio_length": np.array([len(c) for c in clips], "int32"),
            "sample_rate": np.full(len(clips), rate, "int32")}


def test_encoder_and_decoder_match_keras_hub_moonshine():
    import keras_hub

    backbone = tiny_moonshine()
    asr = fk.FineTuner(backbone=backbone, preprocessor=tokenizer(), head=fk.SpeechToTextHead())
    clip = tone(440, seconds=0.5)
    ids = np.array([[1, 5, 7, 9]], "int32")
    inputs = {"encoder_input_values": clip[None, :, None],
              "encoder_padding_mask": np.ones((1, len(clip)), bool),
              "decoder_token_ids": ids, "decoder_padding_mask": np.ones_like(ids, bool)}
    reference = backbone(inputs)
    encoded, mask = features_model(asr)(raw([clip]))
    np.testing.assert_allclose(np.asarray(encoded), np.asarray(reference["encoder_sequence_output"]),
                               atol=1e-4)
    assert np.asarray(mask).all() and np.asarray(mask).shape == (1, 19)
    logits = asr({**raw([clip]), "decoder_token_ids": ids, "decoder_padding_mask": inputs[
        "decoder_padding_mask"]})
    expected = keras_hub.models.MoonshineAudioToText(backbone)(inputs)
    np.testing.assert_allclose(np.asarray(logits), np.asarray(expected), atol=1e-4)


def test_a_clip_gives_the_same_features_whatever_it_is_batched_with():
    ft = fk.FineTuner(backbone=tiny_moonshine(), head=fk.ClassificationHead(2, pooling="mean"))
    short, long_ = tone(300, seconds=0.3), tone(900, seconds=0.8, seed=1)
    alone, _ = features_model(ft)(raw([short]))
    batched, mask = features_model(ft)(raw([short, long_]))
    frames = np.asarray(alone).shape[1]
    assert np.asarray(mask)[0].sum() == frames and np.asarray(mask)[1].all()
    np.testing.assert_allclose(np.asarray(batched)[0, :frames], np.asarray(alone)[0], atol=1e-4)
    both = ft.predict([short, long_], sample_rate=16000, verbose=0)
    np.testing.assert_allclose(both[:1], ft.predict([short], sample_rate=16000, verbose=0),
                               atol=1e-5)


@pytest.mark.slow  # the harness case audio_moonshine fits, predicts, saves and loads by default
def test_classification_with_augmentation_trains_the_open_blocks(tmp_path):
    paths, labels = tone_files(str(tmp_path), n=4, vary=False)
    kws = fk.FineTuner(backbone=tiny_moonshine(encoder_layers=2),
                       head=fk.ClassificationHead(2, pooling="mean"), unfreeze=1,
                       augment={"noise": 0.1, "gain_db": 3, "time_shift": 0.1})
    assert kws.unfrozen_blocks == ["layer_1"]
    trainable = {v.path for v in kws.backbone.trainable_variables}
    assert trainable and all("encoder_block_1" in p or "encoder_final" in p for p in trainable)
    before = [np.array(v) for v in kws.backbone.trainable_variables]
    history = kws.fit(paths, labels, epochs=1, batch_size=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert any(not np.allclose(a, np.asarray(v))
               for a, v in zip(before, kws.backbone.trainable_variables))
    assert kws.predict(paths, verbose=0).shape == (4, 2)


def test_freezing_pairs_encoder_and_decoder_blocks_and_lora():
    kws = fk.FineTuner(backbone=tiny_moonshine(encoder_layers=2),
                       head=fk.ClassificationHead(2, pooling="mean"), unfreeze=1)
    trainable = {v.path for v in kws.backbone.trainable_variables}
    assert kws.unfrozen_blocks == ["layer_1"] and trainable
    assert all("encoder_block_1" in p or "encoder_final" in p for p in trainable)
    asr = fk.FineTuner(backbone=tiny_moonshine(encoder_layers=2, decoder_layers=2),
                       preprocessor=tokenizer(), head=fk.SpeechToTextHead(), unfreeze=1)
    trainable = {v.path for v in asr.backbone.trainable_variables}
    assert any("decoder_block_1" in p for p in trainable)
    assert any("encoder_block_1" in p for p in trainable)
    assert not any("block_0" in p for p in trainable)
    lora = fk.FineTuner(backbone=tiny_moonshine(), preprocessor=tokenizer(),
                        head=fk.SpeechToTextHead(), lora_rank=2)
    paths = [v.path for v in lora.backbone.trainable_variables]
    assert paths and all("lora" in p for p in paths) and any("decoder" in p for p in paths)
    assert json.loads(json.dumps(lora.get_config()))["lora_rank"] == 2


def test_cached_steps_agree_with_the_teacher_forced_decoder():
    from finetunekit.generation.decoding import generate

    asr = fk.FineTuner(backbone=tiny_moonshine(), preprocessor=tokenizer(),
                       head=fk.SpeechToTextHead())
    inputs = raw([tone(300, seconds=0.3), tone(2000, seconds=0.5)])
    encoded, mask = features_model(asr)(inputs)
    ids = generate(asr.backbone_kind.decoder_steps(), encoded, mask, [1], eos_id=-1,
                   max_new_tokens=5)
    tokens = np.array([[1] + row[:4] for row in ids], "int32")
    logits = asr({**inputs, "decoder_token_ids": tokens,
                  "decoder_padding_mask": np.ones_like(tokens, bool)})
    np.testing.assert_array_equal(np.asarray(logits).argmax(-1), np.array(ids))
    beams = generate(asr.backbone_kind.decoder_steps(), encoded, mask, [1], eos_id=-1,
                     max_new_tokens=3, num_beams=2)
    assert [len(row) for row in beams] == [3, 3]


def test_predict_text_report_and_save_load_take_raw_waveforms(tmp_path):
    import keras_hub

    paths, _ = tone_files(str(tmp_path), n=3)
    preprocessor = keras_hub.models.MoonshineAudioToTextPreprocessor(
        audio_converter=keras_hub.layers.MoonshineAudioConverter(do_normalize=True),
        tokenizer=tokenizer())
    task = keras_hub.models.MoonshineAudioToText(tiny_moonshine(), preprocessor=preprocessor)
    asr = fk.FineTuner(backbone=task, head=fk.SpeechToTextHead(max_new_tokens=3))
    assert asr.get_layer("audio_converter").do_normalize
    greedy = asr.predict_text(paths, batch_size=2)
    assert len(greedy) == 3 and all(isinstance(t, str) for t in greedy)
    report = asr.evaluate(paths, ["yes", "no", "up"], report=True)
    assert set(report.metrics) == {"wer", "cer", "exact_match", "wer_unnormalized"}
    assert [e["hypothesis"] for e in report.examples] == greedy
    asr.save(str(tmp_path / "asr.keras"))
    loaded = fk.load(str(tmp_path / "asr.keras"))
    assert loaded.predict_text(paths, batch_size=2) == greedy
    assert loaded.get_layer("audio_converter").do_normalize


def test_preset_names_and_local_preset_folders(tmp_path):
    import keras_hub

    from finetunekit.families.speech.kind import is_audio_preset

    assert is_audio_preset("moonshine_tiny_en") and is_audio_preset("moonshine_base_en")
    tiny_moonshine().save_to_preset(str(tmp_path / "tokenizer_only"))
    tokenizer().save_to_preset(str(tmp_path / "tokenizer_only"))
    kind = fk.backbones.resolve_backbone(str(tmp_path / "tokenizer_only"))
    assert kind.name == "audio" and type(kind.tokenizer).__name__ == "MoonshineTokenizer"
    assert kind.max_seconds == 64.0 and kind.parts.min_seconds == 0.1
    tiny_moonshine().save_to_preset(str(tmp_path / "full"))
    keras_hub.models.MoonshineAudioToTextPreprocessor(
        keras_hub.layers.MoonshineAudioConverter(do_normalize=True), tokenizer()
    ).save_to_preset(str(tmp_path / "full"))
    kind = fk.backbones.resolve_backbone(str(tmp_path / "full"))
    assert kind.preprocessor.audio_converter.do_normalize and kind.tokenizer is not None
    keras.backend.clear_session()


@pytest.mark.slow
def test_speech_to_text_learns_transcribes_and_reloads(tmp_path):
    paths, labels = tone_files(str(tmp_path), n=4, vary=False)
    texts = [WORDS[i] for i in labels]
    asr = fk.FineTuner(backbone=tiny_moonshine(), preprocessor=tokenizer(),
                       head=fk.SpeechToTextHead(max_new_tokens=5), unfreeze="all")
    asr.compile(learning_rate=1e-2)
    asr.fit(paths, texts, epochs=60, batch_size=2, verbose=0)
    assert asr.predict_text(paths) == texts
    assert asr.predict_text(paths, num_beams=2) == texts
    assert asr.evaluate(paths, texts, report=True).metrics["wer"] == 0.0
    asr.save(str(tmp_path / "asr.keras"))
    assert fk.load(str(tmp_path / "asr.keras")).predict_text(paths) == texts
