"""The bad-input catalogue, audio part: unreadable files, sample rates, channels, lengths, transcripts.

One row per case: `(id, run, error, fragment)`, as in `tests/test_bad_inputs.py`
(`error=None`: an awkward input that must work). The same rows are in
docs/errors.md ("Audio and speech").
"""

import functools

import numpy as np
import pytest

import finetunekit as fk
from tests.audio_fixtures import tiny_tokenizer, tiny_whisper, tone, write_wav
from tests.catalogue import run_case, undocumented


@functools.cache
def classifier():
    return fk.FineTuner(backbone=tiny_whisper(), head=fk.ClassificationHead(2, pooling="mean"))


@functools.cache
def recognizer():
    return fk.FineTuner(backbone=tiny_whisper(), preprocessor=tiny_tokenizer(),
                        head=fk.SpeechToTextHead())


def prepare(x, y=(0, 1), tuner=classifier, **options):
    return tuner().prepare(x, list(y) if y is not None else None, **options)


def bad_wav(tmp):
    path = tmp / "bad.wav"
    path.write_bytes(b"RIFF this is not audio")
    return prepare([str(path), write_wav(str(tmp / "ok.wav"), tone(300))])


def mixed_rates(tmp):
    """8 kHz and 44.1 kHz files together: brought to 16 kHz; the same tone gives the same features."""
    low = write_wav(str(tmp / "low.wav"), tone(440, rate=8000), 8000)
    high = write_wav(str(tmp / "high.wav"), tone(440, rate=44100), 44100)
    outputs = classifier().predict([low, high], verbose=0)
    assert np.isfinite(outputs).all()


def stereo(tmp):
    """Stereo and mono clips together: mixed to mono, inside the model for one-format batches."""
    clip = tone(440)
    stereo_clip = np.stack([clip, clip], axis=-1)
    both = classifier().predict([stereo_clip], sample_rate=16000, verbose=0)
    mono = classifier().predict([clip], sample_rate=16000, verbose=0)
    np.testing.assert_allclose(both, mono, atol=1e-5)
    classifier().predict([stereo_clip, clip], sample_rate=16000, verbose=0)


def untokenisable(tmp):
    return prepare([tone(300), tone(900)], ["yes", "héllo 42"], recognizer, sample_rate=16000)


def wav_with_rate(tmp, rate):
    """A valid 16-bit WAV whose header's sample-rate field says `rate`."""
    import struct

    path = write_wav(str(tmp / f"rate_{rate}.wav"), tone(300))
    data = bytearray(open(path, "rb").read())
    data[24:32] = struct.pack("<II", rate, rate * 2)  # sample rate and bytes per second (mono)
    open(path, "wb").write(bytes(data))
    return path


def unsigned_pcm(tmp):
    """8-bit WAV samples (uint8, silence at 128) read centred: silence is 0, not 0.5."""
    from finetunekit.families.speech.readers import audio_sources

    clips, _, _, _ = audio_sources([np.full(800, 128, "uint8"), np.array([0, 255] * 400, "uint8")],
                                   sample_rate=16000)
    assert np.abs(clips[0]).max() == 0.0
    np.testing.assert_allclose(clips[1][:2, 0], [-1.0, 127 / 128])


def wrong_augment(augment):
    return fk.FineTuner(backbone=tiny_whisper(), head=fk.ClassificationHead(2), augment=augment)


# fmt: off
CASES = [
    ("unreadable_audio_file", bad_wav, ValueError, r"Cannot decode the audio file .*bad\.wav.*not a valid 16-bit PCM WAV"),
    ("audio_file_not_found", lambda t: prepare([str(t / "missing.wav")] * 2), ValueError, r"Audio file not found: .*missing\.wav"),
    ("mp3_audio_file", lambda t: prepare([str((t / "a.mp3").write_bytes(b"x") and t / "a.mp3")] * 2), ValueError, r"Unsupported audio file .*a\.mp3.*expected \.wav, \.flac"),
    ("waveforms_without_sample_rate", lambda t: prepare([tone(300), tone(500)]), ValueError, r"Waveform arrays need their sample rate: pass sample_rate=16000"),
    ("sample_rate_not_in_hz", lambda t: prepare([tone(300), tone(500)], sample_rate=16.0), ValueError, r"`sample_rate` must be an int in Hz"),
    ("wav_header_rate_impossible", lambda t: prepare([wav_with_rate(t, 2_000_000_000), wav_with_rate(t, 16000)]), ValueError, r"rate_2000000000\.wav' says its sample rate is 2000000000 Hz, which no recording has \(1000-384000 Hz\); the header is damaged"),
    ("wav_header_rate_zero", lambda t: prepare([wav_with_rate(t, 0), wav_with_rate(t, 16000)]), ValueError, r"rate_0\.wav' says its sample rate is 0 Hz"),
    ("sample_rate_with_audio_files", lambda t: prepare([wav_with_rate(t, 16000)] * 2, sample_rate=8000), ValueError, r"sample_rate=8000 is for waveform arrays; audio files carry their own rate \(here \[16000\] Hz\)"),
    ("pcm16_values_in_int32_arrays", lambda t: prepare([(tone(300) * 20000).astype("int32"), (tone(500) * 20000).astype("int32")], sample_rate=16000), UserWarning, r"2 of 2 waveform\(s\) are int32 arrays whose values fit in 16 bits .* pass clip\.astype\('int16'\)"),
    ("unsigned_8_bit_pcm", unsigned_pcm, None, None),
    ("float_waveform_at_pcm_scale", lambda t: prepare([tone(300) * 16000, tone(500)], sample_rate=16000), ValueError, r"Example 0 is a float waveform peaking at [\d.]+; float waveforms are in \[-1, 1\]\. For 16-bit PCM values stored as floats pass clip / 32768"),
    ("waveform_channels_first", lambda t: prepare([np.stack([tone(300)] * 2), tone(500)], sample_rate=16000), ValueError, r"Example 0 has shape \(2, 4800\): more channels than samples, so it is laid out \(channels, samples\)\. Waveforms are \(samples, channels\): pass clip\.T"),
    ("mixed_sample_rates", mixed_rates, None, None),
    ("stereo_audio", stereo, None, None),
    ("empty_audio_clip", lambda t: prepare([tone(300), np.zeros(0, "float32")], sample_rate=16000), ValueError, r"Audio clip 1 is empty \(0 samples\)"),
    ("nan_in_waveform", lambda t: prepare([tone(300), np.full(800, np.nan, "float32")], sample_rate=16000), ValueError, r"Audio clip 1 has NaN or infinite samples"),
    ("audio_clip_too_long", lambda t: prepare([tone(300), tone(300, seconds=3)], sample_rate=16000), ValueError, r"Audio clip 1 is 3\.00 s long; this backbone takes clips of at most 2 s\. Trim or split"),
    ("waveform_of_strings", lambda t: prepare([np.array(["a", "b"]), tone(3)], sample_rate=16000), ValueError, r"Waveforms must be numbers of shape \(samples,\) or \(samples, channels\)"),
    ("untokenisable_transcript", untokenisable, ValueError, r"Transcript 1 .* has characters the tokenizer cannot encode: \['2', '4', 'é'\]"),
    ("transcript_not_a_string", lambda t: prepare([tone(300), tone(9)], ["yes", 3], recognizer, sample_rate=16000), ValueError, r"Transcripts must be strings, one per clip\. Transcript 1 is int"),
    ("transcript_too_long", lambda t: prepare([tone(300), tone(9)], ["yes", "go " * 20], recognizer, sample_rate=16000), ValueError, r"Transcript 1 is \d+ tokens long; the decoder takes at most 14"),
    ("speech_head_without_tokenizer", lambda t: fk.FineTuner(backbone=tiny_whisper(), head=fk.SpeechToTextHead()).fit([tone(3)], ["yes"], sample_rate=16000), ValueError, r"Speech to text needs the backbone's tokenizer"),
    ("speech_head_on_an_image_backbone", lambda t: fk.FineTuner(backbone="MobileNet", weights=None, input_shape=(32, 32, 3), head=fk.SpeechToTextHead()), ValueError, r"needs a speech decoder \(decoder_logits\), which a image backbone"),
    ("image_augment_on_audio", lambda t: wrong_augment({"rotation_range": 10}), ValueError, r"`augment` for an audio backbone takes the audio keywords noise, gain_db, time_shift, spec_mask"),
    ("unknown_audio_augment_keyword", lambda t: wrong_augment({"noise": 0.1, "pitch": 2}), ValueError, r"Unknown augmentation keyword\(s\): pitch\.(?s:.*)Audio keywords(?s:.*)gain_db"),
    ("image_and_audio_augment_mixed", lambda t: wrong_augment({"noise": 0.1, "horizontal_flip": True}), ValueError, r"`augment` mixes image keywords \(horizontal_flip\) with audio keywords \(noise\)"),
    ("audio_noise_out_of_range", lambda t: wrong_augment({"noise": -1}), ValueError, r"`noise` must be a number in \[0, 10\]\. Received: noise=-1"),
    ("input_shape_on_audio", lambda t: fk.FineTuner(backbone=tiny_whisper(), input_shape=(16, 16, 3), head=fk.ClassificationHead(2)), ValueError, r"`input_shape` does not apply to an audio backbone"),
    ("speech_to_text_tflite_export", lambda t: recognizer().export(str(t / "asr"), format="tflite"), ValueError, r"ft\.export\(format=\"tflite\"\) cannot serve SpeechToTextHead: it generates text with the tokenizer's string ops .* Export format=\"saved_model\" instead"),
    ("cache_features_for_speech_to_text", lambda t: recognizer().fit([tone(300), tone(9)], ["yes", "no"], sample_rate=16000, cache_features=True, verbose=0), ValueError, r"Cannot cache features: speech to text trains Whisper's decoder .* on the encoder output, which is not cached .* Use cache_features=False"),
]
# fmt: on


@pytest.mark.parametrize("case_id,run,error,fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input(tmp_path, case_id, run, error, fragment):
    run_case(run, error, fragment, tmp_path)


def test_rows_are_documented():
    assert undocumented([c[0] for c in CASES], "Audio and speech") == []
