"""The bad-input catalogue, Moonshine part: clip lengths, sample rates, augmentation, tokenizer.

One row per case: `(id, run, error, fragment)`, as in `tests/test_bad_inputs.py`
(`error=None`: an awkward input that must work). The same rows are in
docs/errors.md ("Moonshine").
"""

import functools

import numpy as np
import pytest

import finetunekit as fk
from finetunekit.families.speech.pipeline import _resample_numpy
from tests.audio_fixtures import tiny_moonshine, tiny_moonshine_tokenizer, tone
from tests.catalogue import run_case, undocumented


@functools.cache
def classifier():
    return fk.FineTuner(backbone=tiny_moonshine(), head=fk.ClassificationHead(2, pooling="mean"))


@functools.cache
def recognizer():
    return fk.FineTuner(backbone=tiny_moonshine(), preprocessor=tiny_moonshine_tokenizer(),
                        head=fk.SpeechToTextHead())


def prepare(clips, y=(0, 1), tuner=classifier, rate=16000):
    return tuner().prepare(clips, list(y), sample_rate=rate)


def at_8khz(tmp):
    """8 kHz audio is resampled to Moonshine's 16 kHz in the model, as the pipeline would."""
    clip = tone(440, seconds=0.5, rate=8000)
    inside = classifier().predict([clip], sample_rate=8000, verbose=0)
    resampled = _resample_numpy(clip[:, None], 8000, 16000)
    outside = classifier().predict([resampled], sample_rate=16000, verbose=0)
    np.testing.assert_allclose(inside, outside, atol=1e-4)


# fmt: off
CASES = [
    ("moonshine_clip_too_long", lambda t: prepare([tone(300), np.zeros(65 * 16000, "float32")]), ValueError, r"Audio clip 1 is 65\.00 s long; this backbone takes clips of at most 64 s\. Trim or split"),
    ("moonshine_clip_too_short", lambda t: prepare([tone(300), tone(300, seconds=0.05)]), ValueError, r"Audio clip 1 is 0\.050 s long; this backbone takes clips of at least 0\.1 s\. Pad it with silence"),
    ("moonshine_8khz_audio", at_8khz, None, None),
    ("spec_mask_on_moonshine", lambda t: fk.FineTuner(backbone=tiny_moonshine(), head=fk.ClassificationHead(2), augment={"spec_mask": True}), ValueError, r"`spec_mask` masks log-mel features, which a Moonshine backbone does not compute"),
    ("untokenisable_moonshine_transcript", lambda t: prepare([tone(300), tone(900)], ["yes", "héllo"], recognizer), ValueError, r"Transcript 1 \('héllo'\) has characters the tokenizer cannot encode: \['é'\]"),
    ("moonshine_speech_head_without_tokenizer", lambda t: fk.FineTuner(backbone=tiny_moonshine(), head=fk.SpeechToTextHead()).fit([tone(300)], ["yes"], sample_rate=16000), ValueError, r"Speech to text needs the backbone's tokenizer.*MoonshineTokenizer"),
]
# fmt: on


@pytest.mark.parametrize("case_id,run,error,fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input(tmp_path, case_id, run, error, fragment):
    run_case(run, error, fragment, tmp_path)


def test_rows_are_documented():
    assert undocumented([c[0] for c in CASES], "Moonshine") == []
