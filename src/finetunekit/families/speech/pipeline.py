"""The audio pipeline: folders, manifests, paths, waveform arrays and datasets -> padded batches.

Model inputs are raw: `audio` `(batch, samples, channels)` padded per batch
(to the batch's longest clip, never to a fixed 30 s), `audio_length` (real
samples of each clip) and `sample_rate`. Resampling, mono mixing and log-mel
features happen inside the model (`finetunekit.families.speech.layers`). When the clips
of one call have different rates or channel counts, they are brought to the
backbone's rate / mono here first (a batch shares one rate in the model).
Heads with transcripts (`target_layout == "transcript"`) also get teacher-forcing
decoder inputs: `decoder_token_ids`, `decoder_padding_mask`.
"""

import numpy as np

from finetunekit.core.data.pipeline import (
    Batches,
    Prepared,
    build_splits,
    check_lengths,
    check_sample_weight,
    is_dataset,
    no_split_for_datasets,
    take,
)
from finetunekit.families.speech.readers import audio_sources

AUDIO_INPUTS = ("audio", "audio_length", "sample_rate")


def _resample_numpy(clip, rate, target):
    """Linear interpolation, as the in-model `resample`."""
    ratio = target / rate
    n = int(np.ceil(len(clip) * ratio))
    positions = np.minimum(np.arange(n) / ratio, len(clip) - 1)
    return np.stack([np.interp(positions, np.arange(len(clip)), c) for c in clip.T], -1).astype(
        "float32"
    )


def _dense(value):
    """A slice of a ragged tensor as a plain tensor (`padded_batch` takes only those)."""
    return value.to_tensor() if hasattr(value, "to_tensor") else value


class AudioPipeline:
    """Prepares audio data for one FineTuner.

    Args:
        head: the FineTuner's head.
        sampling_rate: int. The backbone's rate in Hz.
        max_seconds: float. Longest clip the backbone takes.
        tokenizer: the keras-hub tokenizer (transcript heads), or None.
        max_tokens: int. Longest decoder input (prompt and transcript).
        min_seconds: float. Shortest clip the backbone takes (0: any).
    """

    def __init__(self, head, sampling_rate, max_seconds, tokenizer=None, max_tokens=448,
                 min_seconds=0.0):
        self.head = head
        self.max_tokens = int(max_tokens)
        self.sampling_rate = int(sampling_rate)
        self.max_seconds = float(max_seconds)
        self.min_seconds = float(min_seconds)
        self.tokenizer = tokenizer

    @property
    def transcripts(self):
        return self.head.target_layout == "transcript"

    def check_clips(self, clips, rates):
        """Raises for empty or too long clips; unifies mixed rates / channel counts."""
        for i, (clip, rate) in enumerate(zip(clips, rates)):
            if len(clip) == 0:
                raise ValueError(
                    f"Audio clip {i} is empty (0 samples). Remove it or check how it was read."
                )
            if not np.all(np.isfinite(clip)):
                raise ValueError(f"Audio clip {i} has NaN or infinite samples.")
            seconds = len(clip) / rate
            if seconds > self.max_seconds + 1e-6:
                raise ValueError(
                    f"Audio clip {i} is {seconds:.2f} s long; this backbone takes clips of at most "
                    f"{self.max_seconds:g} s. Trim or split longer clips (e.g. `sox in.wav out.wav "
                    f"trim 0 {self.max_seconds:g} : newfile`)."
                )
            if seconds < self.min_seconds - 1e-6:
                raise ValueError(
                    f"Audio clip {i} is {seconds:.3f} s long; this backbone takes clips of at "
                    f"least {self.min_seconds:g} s. Pad it with silence (e.g. `sox in.wav out.wav "
                    f"pad 0 {self.min_seconds:g}`) or remove it."
                )
        if len(set(rates)) > 1:
            clips = [_resample_numpy(c, r, self.sampling_rate) for c, r in zip(clips, rates)]
            rates = [self.sampling_rate] * len(clips)
        if len({c.shape[1] for c in clips}) > 1:
            clips = [c.mean(axis=1, keepdims=True) for c in clips]
        return clips, rates

    def _clip_dataset(self, clips, rates):
        import tensorflow as tf

        lengths = np.asarray([len(c) for c in clips], dtype="int64")
        values = np.concatenate(clips, axis=0)
        ragged = tf.RaggedTensor.from_row_lengths(values, lengths)
        return tf.data.Dataset.from_tensor_slices(
            {"audio": ragged, "audio_length": lengths.astype("int32"),
             "sample_rate": np.asarray(rates, dtype="int32")}
        ).map(lambda e: {**e, "audio": _dense(e["audio"])})

    def _transcript_dataset(self, sequences):
        """`(decoder inputs, next tokens, weights)` ragged slices for teacher forcing."""
        import tensorflow as tf

        prompt = len(self.head.prompt_ids(self.tokenizer))
        inputs = [s[:-1] for s in sequences]
        targets = [s[1:] for s in sequences]
        weights = [np.arange(len(t)) >= prompt - 1 for t in targets]

        def ragged(rows, dtype):
            lengths = [len(r) for r in rows]
            return tf.RaggedTensor.from_row_lengths(
                np.concatenate(rows).astype(dtype), np.asarray(lengths, "int64")
            )

        return tf.data.Dataset.from_tensor_slices(
            (ragged(inputs, "int32"), ragged(targets, "int32"), ragged(weights, "float32"))
        ).map(lambda *parts: tuple(_dense(p) for p in parts))

    def _padded(self, ds, batch_size, channels, samples=None):
        specs = {"audio": [samples, channels], "audio_length": [], "sample_rate": []}
        if not self.transcripts:
            spec = ds.element_spec
            if isinstance(spec, tuple):
                shapes = (specs, *[s.shape for s in spec[1:]])
                return ds.padded_batch(batch_size, padded_shapes=shapes)
            return ds.padded_batch(batch_size, padded_shapes=specs)
        specs = {**specs, "decoder_token_ids": [None], "decoder_padding_mask": [None]}
        return ds.padded_batch(
            batch_size, padded_shapes=(specs, [None], [None]),
            padding_values=({"audio": 0.0, "audio_length": 0, "sample_rate": 0,
                             "decoder_token_ids": int(self.tokenizer.pad_token_id),
                             "decoder_padding_mask": False}, 0, 0.0),
        )

    def make_batches(self, clips, rates, targets, weights, batch_size, shuffle=False, seed=None,
                     pad_to_seconds=None):
        """`Batches` of a padded, cached dataset of clips (and targets, weights).

        Batches are padded to their longest clip, or to `pad_to_seconds` (the
        30-s windows Whisper was pretrained on: better zero-shot transcripts,
        slower); `audio_length` keeps each clip's real length either way.
        """
        import tensorflow as tf

        ds = self._clip_dataset(clips, rates)
        if self.transcripts:
            if targets is None:  # predict: the prompt only
                targets = [np.asarray(self.head.prompt_ids(self.tokenizer) + [0])] * len(clips)
            decoder = self._transcript_dataset(targets)

            def join(x, parts):
                ids, labels, mask = parts
                x = {**x, "decoder_token_ids": ids,
                     "decoder_padding_mask": tf.ones_like(ids, dtype="bool")}
                return x, labels, mask

            ds = tf.data.Dataset.zip((ds, decoder)).map(join)
        elif targets is not None:
            parts = [ds, tf.data.Dataset.from_tensor_slices(targets)]
            if weights is not None:
                parts.append(tf.data.Dataset.from_tensor_slices(weights))
            ds = tf.data.Dataset.zip(tuple(parts))
        ds = ds.cache()
        if shuffle:
            ds = ds.shuffle(len(clips), seed=seed, reshuffle_each_iteration=True)
        samples = None
        if pad_to_seconds:
            samples = max(int(np.ceil(float(pad_to_seconds) * rates[0])), *(len(c) for c in clips))
        ds = self._padded(ds, batch_size, clips[0].shape[1], samples)
        ds = ds.apply(tf.data.experimental.assert_cardinality(-(-len(clips) // batch_size)))
        return Batches(ds.prefetch(tf.data.AUTOTUNE))

    def from_dataset(self, ds, batch_size):
        """A dataset of model inputs as is; one of WAV paths (and labels) decoded and padded here.

        Paths are decoded with `tf.audio.decode_wav` and resampled to the
        backbone's rate inside `tf.data`; a batched dataset is re-batched to
        its own batch size after padding.
        """
        import tensorflow as tf

        from finetunekit.families.speech.resampling import resample

        spec = ds.element_spec
        first = spec[0] if isinstance(spec, tuple) else spec
        if isinstance(first, dict) or first.dtype != tf.string:
            return ds  # already model inputs
        if self.transcripts:
            raise ValueError(
                "A dataset of audio paths is not supported for speech to text (fit, evaluate "
                "or predict); pass lists of paths (and transcripts), or a CSV/JSONL manifest."
            )
        if first.shape.rank:
            batch_size = int(first.shape[0] or batch_size)
            ds = ds.unbatch()

        def decode(path, *rest):
            audio, rate = tf.audio.decode_wav(tf.io.read_file(path))
            audio, _ = resample(audio[None], rate, self.sampling_rate)
            length = tf.shape(audio)[1]
            x = {"audio": audio[0], "audio_length": length, "sample_rate": self.sampling_rate}
            return (x, *rest) if rest else x

        ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
        return self._padded(ds, batch_size, None).prefetch(tf.data.AUTOTUNE)

    def prepare(
        self, x, y=None, *, class_names=None, batch_size=32, shuffle=False, validation_split=0.0,
        sample_weight=None, seed=None, x_col=None, y_col=None, require_labels=True,
        sample_rate=None, pad_to_seconds=None, training=False,
    ):
        """Reads, checks and batches audio (and encodes targets with the head).

        Returns:
            A `Prepared` whose `Batches` hold batched `tf.data.Dataset`s.
        """
        if is_dataset(x):
            no_split_for_datasets(validation_split)
            return Prepared(Batches(self.from_dataset(x, batch_size)), class_names=class_names)
        clips, rates, labels, folder_classes = audio_sources(x, y, sample_rate, x_col, y_col)
        if folder_classes is not None and class_names is None:
            class_names = folder_classes
        check_lengths(len(clips), labels, "audio clips")
        clips, rates = self.check_clips(clips, rates)
        weights = check_sample_weight(sample_weight, len(clips))
        if labels is None and require_labels:
            what = "transcripts" if self.transcripts else "labels"
            raise ValueError(f"No {what}: pass y=... (or a folder / manifest that has them).")
        targets = None
        if labels is not None:
            targets, class_names = self.head.encode_targets(labels, class_names)
            if self.transcripts:
                targets = self.head.tokenize(targets, self.tokenizer, self.max_tokens)
        stratify = None if self.transcripts else targets

        def make(index, training):
            return self.make_batches(
                take(clips, index), take(rates, index), take(targets, index),
                take(weights, index), batch_size, shuffle=training and shuffle, seed=seed,
                pad_to_seconds=pad_to_seconds,
            )

        train, validation, index = build_splits(len(clips), make, validation_split, stratify, seed)
        train_targets = None if self.transcripts else take(targets, index)
        context = {"tokenizer": self.tokenizer} if self.transcripts else None
        return Prepared(train, validation, class_names, train_targets, num_examples=len(index),
                        context=context)
