"""Speech-to-text head: the backbone's (Whisper or Moonshine) decoder with cross-attention.

Training is teacher forcing: the audio pipeline feeds the prompt and the
transcript's tokens to the decoder (`decoder_token_ids`) and the next token of
each position as the target, weighted 0 on the prompt and padding. The head
adds `FineTuner.predict_text` (cached greedy or beam-search decoding) and a
`Report` of word and character error rates (jiwer) for
`ft.evaluate(x, transcripts, report=True)`.
"""

import keras
import numpy as np
from keras import ops

from finetunekit.core.reports import Report
from finetunekit.generation.decoding import end_id, prompt_ids, special_ids
from finetunekit.generation.language_model import NextTokenHead


@keras.saving.register_keras_serializable(package="finetunekit")
class SpeechToTextHead(NextTokenHead):
    """Transcribes speech with the backbone's Whisper or Moonshine decoder (tied output projection).

    Args:
        max_new_tokens: int. Longest transcript `predict_text` writes, in
            tokens. Defaults to 64.
        num_beams: int. Default beam width of `predict_text` (1: greedy).
        language: str or None. Language token of a multilingual Whisper
            (`"en"` gives `<|en|>`); ignored by English-only models.
        **kwargs: Standard `keras.layers.Layer` arguments.

    Returns:
        Vocabulary logits `(batch, decoder positions, vocabulary)`, float32.

    Example:
    ```python
    asr = fk.FineTuner(backbone="whisper_tiny_en", head=fk.SpeechToTextHead(), unfreeze=2)
    asr.fit(["a.wav", "b.wav"], ["turn left", "stop"], epochs=3)
    asr.predict_text(["c.wav"])            # ["turn right"]
    asr.evaluate(["c.wav"], ["turn right"], report=True).metrics["wer"]
    ```
    """

    needs = ("decoder_logits",)
    logits_key = "decoder_logits"
    target_layout = "transcript"
    task_methods = ("predict_text",)
    cli_task = "speech"

    def __init__(self, max_new_tokens=64, num_beams=1, language="en", **kwargs):
        super().__init__(**kwargs)
        for name, value in (("max_new_tokens", max_new_tokens), ("num_beams", num_beams)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"`{name}` must be an int >= 1. Received: {name}={value!r}")
        self.max_new_tokens = int(max_new_tokens)
        self.num_beams = int(num_beams)
        self.language = language

    def get_config(self):
        return {**super().get_config(), "max_new_tokens": self.max_new_tokens,
                "num_beams": self.num_beams, "language": self.language}

    # ---------------------------------------------------------------- targets
    def encode_targets(self, y, class_names=None):
        """Checks transcripts (one string per clip); the audio pipeline tokenises them.

        Returns:
            `(list of str, None)`.
        """
        texts = list(y.tolist() if hasattr(y, "tolist") else y)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise ValueError(
                    f"Transcripts must be strings, one per clip. Transcript {i} is "
                    f"{type(text).__name__}: {text!r}"
                )
        return [text.strip() for text in texts], None

    def prompt_ids(self, tokenizer):
        """Whisper: `<|startoftranscript|>` [language, `<|transcribe|>`] `<|notimestamps|>`; Moonshine: `<s>`."""
        return prompt_ids(tokenizer, self.language)

    def tokenize(self, texts, tokenizer, max_length):
        """Prompt + tokens + end token for each transcript; raises for untokenisable text."""
        _check_tokenizer(tokenizer)
        prompt = self.prompt_ids(tokenizer)
        sequences = []
        for i, text in enumerate(texts):
            ids = [int(t) for t in ops.convert_to_numpy(tokenizer(" " + text)) if t >= 0]
            if text and tokenizer.detokenize(ids).strip() != text:
                kept = set(tokenizer.detokenize(ids))
                missing = sorted({c for c in text if c not in kept and not c.isspace()})
                raise ValueError(
                    f"Transcript {i} ({text!r}) has characters the tokenizer cannot encode: "
                    f"{missing}. Remove or replace them (e.g. normalise the text) before training."
                )
            sequence = prompt + ids + [end_id(tokenizer)]
            if len(sequence) - 1 > max_length:
                raise ValueError(
                    f"Transcript {i} is {len(ids)} tokens long; the decoder takes at most "
                    f"{max_length - len(prompt)}. Split the clip and its transcript."
                )
            sequences.append(np.asarray(sequence, "int32"))
        return sequences

    # ---------------------------------------------------------------- outputs
    def decode(self, outputs, class_names=None, context=None):
        """The most likely next token after each teacher-forced position, as text.

        For transcripts use `ft.predict_text(audio)`, which generates.
        """
        tokenizer = (context or {}).get("tokenizer")
        ids = np.asarray(outputs).argmax(-1)
        if tokenizer is None:
            return ids.tolist()
        skip = special_ids(tokenizer, np.asarray(outputs).shape[-1]) | {end_id(tokenizer)}
        return [tokenizer.detokenize([int(t) for t in row if int(t) not in skip]) for row in ids]

    def predict_text(self, tuner, x, batch_size=None, num_beams=None, max_new_tokens=None,
                     **options):
        """Transcribes audio with cached greedy (or beam-search) decoding.

        Args:
            tuner: the `FineTuner` (passed by `ft.predict_text`).
            x: audio in any form `fit` accepts (paths, a folder, a manifest,
                waveforms with `sample_rate=`).
            batch_size: int. Defaults to 32.
            num_beams: int or None. Beam width (defaults to the head's).
            max_new_tokens: int or None. Longest transcript in tokens.
            **options: data options (`sample_rate`, `x_col`).

        Returns:
            A list of str, one transcript per clip.
        """
        from finetunekit.generation.decoding import generate

        kind = tuner.backbone_kind
        tokenizer = kind.tokenizer
        _check_tokenizer(tokenizer)
        prepared = tuner.prepare(x, None, batch_size, require_labels=False, **options)
        from finetunekit.families.speech.serving import AUDIO_INPUTS, speech_encoder

        encoder = speech_encoder(tuner)
        # Never write special tokens (start, task, language, timestamps, padding).
        suppress = sorted(special_ids(tokenizer, tuner.backbone.vocabulary_size))
        prompt = self.prompt_ids(tokenizer)
        room = kind.max_decoder_tokens - len(prompt)  # decoder positions left
        max_new_tokens = min(max_new_tokens or self.max_new_tokens, room)
        steps = kind.decoder_steps()
        texts = []
        for batch in prepared.train.x:
            features = batch[0] if isinstance(batch, tuple) else batch
            encoded, mask = encoder({n: features[n] for n in AUDIO_INPUTS}, training=False)
            ids = generate(steps, encoded, mask, prompt, end_id(tokenizer),
                           max_new_tokens, num_beams or self.num_beams, suppress)
            texts += [tokenizer.detokenize(row).strip() if row else "" for row in ids]
        return texts

    def serving_function(self, tuner):
        """Greedy transcription as one graph (`ft.export`): waveforms in, token ids and text out."""
        from finetunekit.families.speech.serving import greedy_transcriber

        return greedy_transcriber(tuner)

    def make_report(self, tuner, x, y=None, batch_size=None, **options):
        """Word and character error rates of `predict_text` against transcripts (jiwer)."""
        references = y
        if references is None:
            from finetunekit.families.speech.readers import audio_sources

            references = audio_sources(x, None, options.get("sample_rate"),
                                       options.get("x_col"), options.get("y_col"))[2]
        if references is None:
            raise ValueError("A speech report needs transcripts: pass y=... or a manifest.")
        references, _ = self.encode_targets(references)
        hypotheses = self.predict_text(tuner, x, batch_size=batch_size, **options)
        return transcript_report(references, hypotheses)


def _check_tokenizer(tokenizer):
    if tokenizer is None:
        raise ValueError(
            "Speech to text needs the backbone's tokenizer: use a Whisper or Moonshine preset (or "
            "preset folder) that has one, or pass preprocessor=keras_hub.models.WhisperTokenizer"
            "(...) (MoonshineTokenizer(...) for a Moonshine backbone)."
        )


def normalize_text(text):
    """Lower case, punctuation removed (apostrophes kept), whitespace collapsed: how WER is scored."""
    import re

    return " ".join(re.sub(r"[^\w\s']", " ", str(text).lower()).split())


def transcript_report(references, hypotheses):
    """A `Report` of hypotheses against references (jiwer).

    `wer`, `cer` and `exact_match` compare normalised text (`normalize_text`:
    case and punctuation do not count); `wer_unnormalized` compares as written.
    """
    try:
        import jiwer
    except ImportError:
        raise ValueError(
            "WER/CER reports need jiwer: pip install 'finetunekit[speech]' (or jiwer)."
        ) from None
    pairs = [(r, h) for r, h in zip(references, hypotheses) if normalize_text(r)]
    refs = [normalize_text(r) for r, _ in pairs]
    hyps = [normalize_text(h) for _, h in pairs]
    metrics = {"wer": float(jiwer.wer(refs, hyps)), "cer": float(jiwer.cer(refs, hyps)),
               "exact_match": float(np.mean([r == h for r, h in zip(refs, hyps)])),
               "wer_unnormalized": float(jiwer.wer([r for r, _ in pairs], [h for _, h in pairs]))}
    report = Report("speech_to_text", metrics, {}, None, [], len(pairs))
    report.examples = [{"reference": r, "hypothesis": h} for r, h in pairs]
    return report
