"""Sequence-to-sequence head: translation, summarisation, any text -> text task."""


import keras
import numpy as np

from finetunekit.core.notices import warn_user
from finetunekit.core.reports import Report
from finetunekit.generation.language_model import NextTokenHead

STRATEGIES = ("greedy", "beam", "top_k")
DECODERS = (None, "warm_start")


@keras.saving.register_keras_serializable(package="finetunekit")
class Seq2SeqHead(NextTokenHead):
    """Text-to-text head on a keras-hub encoder-decoder (BART, T5).

    Trains the decoder's next-token predictions with teacher forcing (the
    loss skips padding); `ft.predict_text(sources)` generates with keras-hub's
    samplers and `ft.evaluate(sources, targets, report=True)` scores the
    generated text with sacreBLEU (BLEU and chrF). Targets longer than
    `max_target_length` tokens are truncated with a warning.

    Args:
        max_target_length: int. Longest target, in tokens (without the start
            and end tokens). Defaults to `64`.
        decoder: `None` (the backbone's own decoder: BART, T5) or
            `"warm_start"`: on an encoder-only BERT-family backbone, build an
            encoder-decoder whose encoder and whose decoder's self-attention
            and feed-forward weights start from the BERT checkpoint, with new
            cross-attention and the output tied to the token embedding (Rothe,
            Narayan & Severyn, TACL 2020; see `fk.backbones.warm_start`).
        **kwargs: Standard `keras.layers.Layer` arguments.

    Returns:
        Next-token logits of shape `(batch, target_tokens, vocabulary)`, float32.

    Example:
    ```python
    mt = fk.FineTuner(backbone="bart_base_en", head=fk.Seq2SeqHead(max_target_length=64))
    mt.fit(sources, targets, epochs=3)
    mt.predict_text(["The cat sat."], strategy="beam", num_beams=4)
    mt.evaluate(sources, targets, report=True)   # BLEU and chrF
    bert2bert = fk.FineTuner(backbone=minilm_folder, head=fk.Seq2SeqHead(decoder="warm_start"),
                             unfreeze="all")
    ```
    """

    needs = ("lm_logits",)
    target_layout = "sequence"
    task_methods = ("predict_text",)
    cli_task = "seq2seq"

    def __init__(self, max_target_length=64, decoder=None, **kwargs):
        super().__init__(**kwargs)
        if decoder not in DECODERS:
            raise ValueError(
                f"Unknown decoder {decoder!r}. Expected None (the backbone's own decoder) or "
                '"warm_start" (a decoder warm-started from a BERT-family encoder).'
            )
        self.decoder = decoder
        if isinstance(max_target_length, bool) or not isinstance(
            max_target_length, (int, np.integer)
        ) or max_target_length < 1:
            raise ValueError(
                "`max_target_length` must be a positive int (tokens). "
                f"Received: max_target_length={max_target_length!r}"
            )
        self.max_target_length = int(max_target_length)

    def adapt_backbone(self, kind):
        """With `decoder="warm_start"`, the encoder-decoder warm-started from a BERT `kind`."""
        if kind.name == "causal_lm":
            raise ValueError(
                "A Seq2SeqHead needs an encoder-decoder language model backbone (a keras-hub "
                "Seq2SeqLM: BART, T5); a decoder-only causal language model trains with "
                "fk.InstructionHead (prompt/completion pairs or chat messages) instead."
            )
        if self.decoder is None:
            return kind
        from finetunekit.families.seq2seq import warm_start

        if "lm_logits" in kind.provides:
            if warm_start.is_warm_start_backbone(kind.model):
                return warm_start.train_new_weights(kind)  # a loaded model: already warm-started
            raise ValueError(
                f'Seq2SeqHead(decoder="warm_start") builds a decoder for an encoder-only BERT '
                f"backbone; {type(kind.model).__name__} has its own decoder. Drop decoder=."
            )
        if getattr(kind, "name", None) != "text_encoder":
            raise ValueError(
                f'Seq2SeqHead(decoder="warm_start") needs a BERT-family text encoder; a '
                f"{kind.modality} backbone ({kind.name}) cannot be warm-started."
            )
        return warm_start.warm_start_kind(kind)

    def encode_targets(self, y, class_names=None):
        """Checks target texts: a list of non-empty strings. Returns `(texts, None)`."""
        texts = [t.decode("utf-8", "replace") if isinstance(t, bytes) else t for t in list(y)]
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise ValueError(
                f"A Seq2SeqHead needs target texts (strings); target {bad[0]} is "
                f"{type(texts[bad[0]]).__name__}: {texts[bad[0]]!r}."
            )
        empty = [i for i, t in enumerate(texts) if not t.strip()]
        if empty:
            raise ValueError(
                f"{len(empty)} target text(s) are empty (rows {empty[:5]}); a Seq2SeqHead "
                "learns to generate each target. Drop those pairs."
            )
        return texts, None

    def warn_truncated(self, lengths):
        """Warns once about targets longer than `max_target_length` tokens (they are cut)."""
        lengths = np.asarray(lengths)
        long = np.flatnonzero(lengths > self.max_target_length)
        if len(long):
            warn_user(
                f"{len(long)} target(s) are longer than max_target_length="
                f"{self.max_target_length} tokens (longest {int(lengths.max())}, rows "
                f"{long[:5].tolist()}) and are truncated; raise max_target_length to keep them.",
            )

    def decode(self, outputs, class_names=None, context=None):
        """Greedy next tokens of teacher-forced outputs (use `ft.predict_text` to generate)."""
        return np.argmax(np.asarray(outputs), axis=-1)

    def predict_text(
        self, tuner, x, strategy="greedy", num_beams=4, top_k=10, max_length=None, batch_size=None,
    ):
        """Generated texts: `ft.predict_text(sources, strategy="beam", num_beams=4)`.

        Args:
            tuner: the FineTuner.
            x: a list of source texts (or one string).
            strategy: `"greedy"`, `"beam"` or `"top_k"` (keras-hub samplers).
            num_beams: int. Beams of `"beam"`. Defaults to 4.
            top_k: int. Candidates of `"top_k"`. Defaults to 10.
            max_length: int or None. Longest output in tokens. Defaults to
                `max_target_length`.
            batch_size: int. Defaults to 32.

        Returns:
            A list of str (one string for a string input).
        """
        import keras_hub

        if strategy not in STRATEGIES:
            raise ValueError(
                f"Unknown strategy {strategy!r}. Expected one of {', '.join(map(repr, STRATEGIES))}."
            )
        from finetunekit.families.seq2seq.pipeline import read_pairs

        for name, value in (("num_beams", num_beams), ("top_k", top_k), ("max_length", max_length)):
            if value is not None and (isinstance(value, bool) or not isinstance(
                    value, (int, np.integer)) or value < 1):
                raise ValueError(f"`{name}` must be an int >= 1. Received: {name}={value!r}")
        single = isinstance(x, (str, bytes))
        sources, _ = read_pairs([x] if single else x)
        samplers = {
            "greedy": lambda: keras_hub.samplers.GreedySampler(),
            "beam": lambda: keras_hub.samplers.BeamSampler(num_beams=int(num_beams)),
            "top_k": lambda: keras_hub.samplers.TopKSampler(k=int(top_k)),
        }
        tuner.backbone_kind.check_target_length(self, max_length)
        key = (strategy, int(num_beams), int(top_k))
        generator = tuner.backbone_kind.compiled_generator(key, samplers[strategy])
        length = self.decoder_length(tuner.preprocessor, max_length or self.max_target_length)
        texts = []
        size = batch_size or 32
        for start in range(0, len(sources), size):
            out = generator.generate(sources[start : start + size], max_length=length)
            texts += [_as_str(t).strip() for t in np.asarray(out, dtype=object).reshape(-1)]
        return texts[0] if single else texts

    def serving_function(self, tuner):
        """Greedy generation as one graph (`ft.export`): raw source strings in, text out.

        The tokenizer, keras-hub's generation loop and the detokenizer all
        run in the graph, so serving needs TensorFlow only.

        Args:
            tuner: the `FineTuner` being exported.

        Returns:
            `fn({"texts": strings}, training=False) -> {"text": string (batch,), "token_ids":
            int32 (batch, length)}` (the decoder's tokens, start token included).
        """
        import keras_hub

        generator = tuner.backbone_kind.compiled_generator(
            ("greedy", 1, 0), keras_hub.samplers.GreedySampler
        )
        preprocessor = generator.preprocessor
        if not preprocessor.built:  # fit / predict_text built it already; building again raises
            preprocessor.build(None)
        length = self.decoder_length(preprocessor, self.max_target_length)
        stop = (int(preprocessor.tokenizer.end_token_id),)

        def serve(inputs, training=False):
            del training  # generation runs in inference mode
            inputs = preprocessor.generate_preprocess(inputs["texts"], sequence_length=length)
            outputs = generator.generate_step(inputs, stop_token_ids=stop)
            return {
                "text": preprocessor.generate_postprocess(outputs),
                "token_ids": outputs["decoder_token_ids"],
            }

        return serve

    def serving_resources(self, tuner):
        """The keras-hub generator and its preprocessor (tokenizer tables) for the SavedModel."""
        generator = tuner.backbone_kind.generator()
        return [generator, generator.preprocessor]

    @staticmethod
    def decoder_length(preprocessor, target_tokens):
        """Decoder positions for `target_tokens` tokens plus the preprocessor's start/end tokens."""
        return int(target_tokens) + special_overhead(preprocessor)

    def make_report(self, tuner, x, y=None, batch_size=None, **options):
        """BLEU and chrF (sacreBLEU) of generated texts against the targets (`evaluate(report=True)`)."""
        from finetunekit.families.seq2seq.pipeline import read_pairs

        sources, targets = read_pairs(x, y, options.get("x_col"), options.get("y_col"))
        targets, _ = self.encode_targets(targets)
        predictions = self.predict_text(tuner, sources, batch_size=batch_size)
        return text_report(predictions, targets)

    def get_config(self):
        return {
            **super().get_config(), "max_target_length": self.max_target_length,
            "decoder": self.decoder,
        }


def special_overhead(preprocessor):
    """Decoder positions a preprocessor adds to a target's tokens (3 for BART: `</s><s>` and `</s>`)."""
    out = preprocessor({"encoder_text": [""], "decoder_text": [""]})
    mask = out[0]["decoder_padding_mask"] if isinstance(out, tuple) else out["decoder_padding_mask"]
    return int(np.asarray(mask).sum())


def _as_str(value):
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def text_report(predictions, references):
    """A `Report` of corpus BLEU and chrF (sacreBLEU) of `predictions` against `references`.

    Args:
        predictions: list of str.
        references: list of str, one per prediction.

    Returns:
        A `fk.Report` with metrics `bleu` and `chrf` (0-100).

    Example:
    ```python
    text_report(["the cat sat"], ["the cat sat"]).metrics["bleu"]  # 100.0
    ```
    """
    try:
        import sacrebleu
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "BLEU and chrF need sacreBLEU: pip install 'finetunekit[seq2seq]'."
        ) from error
    bleu = sacrebleu.corpus_bleu(predictions, [references])
    chrf = sacrebleu.corpus_chrf(predictions, [references])
    metrics = {"bleu": float(bleu.score), "chrf": float(chrf.score)}
    return Report("text generation", metrics, {}, None, [], len(references))
