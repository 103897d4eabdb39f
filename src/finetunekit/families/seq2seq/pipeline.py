"""The sequence-to-sequence pipeline: (source, target) text pairs -> packed encoder/decoder batches.

Pairs come from two lists, a DataFrame or a CSV / TSV / JSONL / JSON /
Parquet file (columns `source` and `target`, or the first two). The
backbone's keras-hub `Seq2SeqLMPreprocessor` tokenises and packs both sides
once (cached); each example is cut to its own length and each batch is
padded to its own longest source and target (or, with `padding="bucket"`, training batches
group pairs of similar length and pad each side to one of a few widths; see
`finetunekit.core.data.text_buckets`). Labels are the decoder tokens shifted by one and the
sample weights the target padding mask, as in keras-hub's `Seq2SeqLM`.
"""

import os

import numpy as np

from finetunekit.core.data.pipeline import (
    Batches,
    Prepared,
    build_splits,
    check_sample_weight,
    take,
)
from finetunekit.core.data.text_buckets import (
    bucket_lengths,
    bucket_width,
    check_padding,
    chunk_batches,
    is_mode,
    pad_to,
    padded_batches,
    sortish,
)
from finetunekit.core.data.text_cleaning import sanitize_utf8, to_utf8_bytes
from finetunekit.core.data.text_readers import TEXT_FILE_TYPES, check_text_items, read_table
from finetunekit.core.notices import warn_user

SOURCE_COLUMNS = ("source", "src", "input", "inputs", "text", "en")
TARGET_COLUMNS = ("target", "tgt", "output", "outputs", "translation", "summary", "label")
PAIR_INPUTS = ("encoder_token_ids", "encoder_padding_mask", "decoder_token_ids",
               "decoder_padding_mask")


def _column(df, given, names, position, what, option):
    columns = list(df.columns)
    if given is not None:
        if given not in columns:
            raise ValueError(f"No {what} column {given!r} (columns: {columns}). Pass {option}.")
        return given
    for name in names:
        if name in columns:
            return name
    if len(columns) >= 2:
        return columns[position]
    raise ValueError(
        f"Cannot find the {what} column (columns: {columns}); name it {names[0]!r} or pass {option}."
    )


def read_pairs(x, y=None, x_col=None, y_col=None):
    """`(sources, targets)` from two lists, a DataFrame or a CSV/TSV/JSONL/JSON/Parquet file.

    Args:
        x: list of source texts, a DataFrame, or the path of a table file.
        y: list of target texts (None for a table, or at prediction time).
        x_col, y_col: column names of a table (default `source`/`target`, or
            the first two columns).

    Returns:
        `(sources, targets)`: lists of str (targets None when there are none).
    """
    if isinstance(x, (str, os.PathLike)) and os.fspath(x).lower().endswith(TEXT_FILE_TYPES):
        if not os.path.exists(x):
            raise FileNotFoundError(f"No such file of text pairs: {os.fspath(x)!r}")
        x = read_table(x)
    if hasattr(x, "columns"):
        source = _column(x, x_col, SOURCE_COLUMNS, 0, "source", "x_col=")
        if y is None:
            y = x[_column(x, y_col, TARGET_COLUMNS, 1, "target", "y_col=")].tolist()
        x = x[source].tolist()
    if isinstance(x, (str, bytes)):
        x = [x]
    sources = check_sources(check_text_items(list(x)))
    if y is not None:
        y = [y] if isinstance(y, (str, bytes)) else list(y)
        if len(y) != len(sources):
            raise ValueError(
                f"Sources and targets must pair up: {len(sources)} sources but {len(y)} targets."
            )
    return sources, y


def check_sources(sources):
    """Refuses sources that are not texts, or are empty (a model would learn from nothing).

    Args:
        sources: list of source items.

    Returns:
        `sources`, unchanged.
    """
    other = [i for i, s in enumerate(sources) if not isinstance(s, (str, bytes))]
    if other:
        first = sources[other[0]]
        raise ValueError(
            f"Sources must be texts; {len(other)} of {len(sources)} are not (source {other[0]} "
            f"is {type(first).__name__}: {first!r}). Convert them with str() if they are "
            "meant as text."
        )
    empty = [i for i, s in enumerate(sources) if not (s.decode("utf-8", "replace")
                                                     if isinstance(s, bytes) else s).strip()]
    if empty:
        raise ValueError(
            f"{len(empty)} source text(s) are empty (rows {empty[:5]}); a Seq2SeqHead "
            "generates each target from its source. Drop those pairs."
        )
    return sources


def unknown_token_id(tokenizer):
    """The id a tokenizer gives to text it does not know (`[UNK]`, `<unk>`), or None (byte-level BPE)."""
    import keras_hub

    if isinstance(tokenizer, keras_hub.tokenizers.BytePairTokenizer):
        return None  # byte-level: every character has tokens
    for name in (getattr(tokenizer, "oov_token", None), getattr(tokenizer, "unk_token", None),
                 "[UNK]", "<unk>"):
        if not name:
            continue
        try:
            found = tokenizer.token_to_id(name)
        except (KeyError, ValueError, TypeError, AttributeError):
            continue
        if found is not None:
            return int(found)
    return None


def check_unknown_tokens(what, texts, pieces, unknown):
    """Refuses texts that tokenise to unknown tokens only; warns with counts about any unknown."""
    only = [i for i, p in enumerate(pieces) if p and all(t == unknown for t in p)]
    if only:
        raise ValueError(
            f"{len(only)} {what} text(s) tokenise to nothing but unknown tokens (rows "
            f"{only[:5]}, e.g. {texts[only[0]]!r}): the model would learn nothing from them. "
            "Use a tokenizer that knows their characters, or drop those pairs."
        )
    some = [i for i, p in enumerate(pieces) if unknown in p]
    if some:
        warn_user(
            f"{len(some)} of {len(texts)} {what} text(s) hold characters or words the tokenizer "
            f"does not know (they become one unknown token each), e.g. row {some[0]}: "
            f"{texts[some[0]]!r}. Strip accents (unicodedata.normalize('NFKD', ...)) or use a "
            "tokenizer that knows them."
        )


def encoder_overhead(preprocessor):
    """Encoder positions a preprocessor adds to a source's tokens (2 for BART: `<s>` and `</s>`)."""
    out = preprocessor({"encoder_text": [""], "decoder_text": [""]})
    x = out[0] if isinstance(out, tuple) else out
    return int(np.asarray(x["encoder_padding_mask"]).sum())


class Seq2SeqPipeline:
    """Prepares text pairs for a FineTuner with a `Seq2SeqHead`.

    Args:
        head: the `Seq2SeqHead`.
        preprocessor: the backbone's keras-hub `Seq2SeqLMPreprocessor`.
        trains: bool. Whether any backbone weight trains (the head has none).
    """

    def __init__(self, head, preprocessor, trains=True):
        self.head = head
        self.trains = trains
        self.preprocessor = preprocessor
        self.preprocessor.decoder_sequence_length = head.decoder_length(
            preprocessor, head.max_target_length
        )

    @property
    def pad_token_id(self):
        value = getattr(self.preprocessor.tokenizer, "pad_token_id", None)
        return 0 if value is None else int(value)

    def pieces(self, texts):
        """Token ids of each text (without start/end tokens), as lists."""
        import tensorflow as tf

        pieces = self.preprocessor.tokenizer(tf.constant(np.asarray(texts, dtype=object)))
        return pieces.to_list() if hasattr(pieces, "to_list") else [list(p) for p in pieces]

    def check_tokens(self, sources, targets):
        """Warns with counts about texts that are cut or hold unknown tokens; refuses texts of
        nothing but unknown tokens."""
        source_pieces, target_pieces = self.pieces(sources), self.pieces(targets)
        self.head.warn_truncated([len(p) for p in target_pieces])
        self.warn_long_sources([len(p) for p in source_pieces])
        unknown = unknown_token_id(self.preprocessor.tokenizer)
        if unknown is None:
            return
        for what, texts, pieces in (("source", sources, source_pieces),
                                    ("target", targets, target_pieces)):
            check_unknown_tokens(what, texts, pieces, unknown)

    def warn_long_sources(self, lengths):
        """Warns with counts about sources longer than the encoder's sequence length (they are cut)."""
        limit = int(self.preprocessor.encoder_sequence_length)
        lengths = np.asarray(lengths)
        room = limit - encoder_overhead(self.preprocessor)
        long = np.flatnonzero(lengths > room)
        if len(long):
            warn_user(
                f"{len(long)} of {len(lengths)} source(s) are longer than the encoder's "
                f"{limit} positions (longest {int(lengths.max())} tokens, rows "
                f"{long[:5].tolist()}) and are truncated; pass sequence_length= to FineTuner "
                "(up to the backbone's maximum) to keep more of them."
            )

    def _pack(self, sources, targets):
        """Tokenises and packs one batch of pairs; returns `(x, y, sample_weight)`."""
        x, y, weight = self.preprocessor(
            {"encoder_text": sanitize_utf8(sources), "decoder_text": sanitize_utf8(targets)}
        )
        return {name: x[name] for name in PAIR_INPUTS}, y, weight

    def _trim(self, x, y, weight, *rest):
        """Cuts one example's source and target padding."""
        import tensorflow as tf

        source = tf.reduce_sum(tf.cast(x["encoder_padding_mask"], "int32"))
        target = tf.reduce_sum(tf.cast(x["decoder_padding_mask"], "int32"))
        x = {name: value[: source if name.startswith("encoder") else target]
             for name, value in x.items()}
        weight = tf.cast(weight[:target], "float32")
        if rest:  # a per-example sample weight scales every target token
            weight = weight * rest[0]
        return x, y[:target], weight

    def pack(self, sources, targets, chunk=4096):
        """Tokenises and packs pairs eagerly (much faster than tracing the tokenizer in tf.data).

        Returns:
            `(x, y, sample_weight)` as numpy arrays padded to the preprocessor's lengths.
        """
        import tensorflow as tf

        parts = []
        for start in range(0, len(sources), chunk):
            columns = [
                tf.constant(np.asarray([to_utf8_bytes(t) for t in c[start : start + chunk]], object))
                for c in (sources, targets)
            ]
            parts.append(tf.nest.map_structure(np.asarray, self._pack(*columns)))
        return tf.nest.map_structure(lambda *p: np.concatenate(p), *parts)

    def pairs_dataset(self, sources, targets, weights=None):
        """Unbatched dataset of trimmed `(x, y, sample_weight)`, one per pair (order kept)."""
        import tensorflow as tf

        x, y, weight = self.pack(sources, targets)
        columns = (x, y, weight) if weights is None else (x, y, weight, weights)
        ds = tf.data.Dataset.from_tensor_slices(columns)
        return ds.map(self._trim, num_parallel_calls=tf.data.AUTOTUNE)

    def batch(self, ds, batch_size, n, shuffle=False, seed=None, padding="dynamic"):
        import tensorflow as tf

        pad = self.pad_token_id
        values = (
            {name: tf.constant(False if name.endswith("mask") else pad,
                               "bool" if name.endswith("mask") else "int32")
             for name in PAIR_INPUTS},
            tf.constant(pad, "int32"),
            tf.constant(0.0, "float32"),
        )
        shapes = ({name: [None] for name in PAIR_INPUTS}, [None], [None])
        return Batches(padded_batches(ds, n, batch_size, shapes, values, self._bucketed, padding,
                                      shuffle, seed))

    def _bucketed(self, ds, batch_size, n, shapes, values, padding):
        """Sortish batches by source plus target length; each side padded to a bucket width."""
        import tensorflow as tf

        sides = {
            "encoder": tf.constant(bucket_lengths(padding, self.preprocessor.encoder_sequence_length)),
            "decoder": tf.constant(bucket_lengths(padding, self.preprocessor.decoder_sequence_length)),
        }

        def lengths(x, side):
            return tf.reduce_sum(tf.cast(x[f"{side}_padding_mask"], "int32"), axis=-1)

        def to_bucket(x, y, weight):
            widths = {side: bucket_width(b, tf.reduce_max(lengths(x, side)))
                      for side, b in sides.items()}
            x = {name: pad_to(value, widths[name.split("_")[0]], values[0][name])
                 for name, value in x.items()}
            target = widths["decoder"]
            return x, pad_to(y, target, values[1]), pad_to(weight, target, values[2])

        def length_of(element):
            return lengths(element[0], "encoder") + lengths(element[0], "decoder")

        return sortish(ds, batch_size, shapes, values, length_of, to_bucket,
                       chunk_batches(n, batch_size))

    def prepare(
        self, x, y=None, *, class_names=None, batch_size=32, shuffle=False, validation_split=0.0,
        sample_weight=None, seed=None, x_col=None, y_col=None, require_labels=True,
        padding="dynamic", training=False,
    ):
        """Checks, packs and batches text pairs.

        Returns:
            A `Prepared` whose `Batches` hold batched `tf.data.Dataset`s.
        """
        from finetunekit.core.data.pipeline import is_dataset

        del class_names
        if training and not self.trains:
            raise ValueError(
                "A Seq2SeqHead has no weights of its own, and with unfreeze=0 the backbone is "
                'frozen: nothing would train. Pass unfreeze="all" (or a number of layers), or '
                "lora_rank=8."
            )
        check_padding(padding)
        if is_mode(padding, "fixed"):
            raise ValueError(
                "A Seq2SeqHead pads each batch to its longest source and target "
                '(padding="dynamic"), or to bucket widths (padding="bucket" or a list of '
                'lengths); padding="fixed" is not supported for text pairs.'
            )
        if is_dataset(x) or (isinstance(x, str) and x.startswith("tfds:")):
            raise ValueError(
                "A Seq2SeqHead reads pairs from two lists, a DataFrame or a CSV/TSV/JSONL file; "
                "tf.data datasets and TFDS are not supported yet. Pass lists of strings."
            )
        sources, targets = read_pairs(x, y, x_col, y_col)
        if targets is None:
            if require_labels:
                raise ValueError("No targets: pass y=[target texts] (or a table with a target column).")
            targets = [""] * len(sources)  # generation prompts: the decoder's start tokens only
        else:
            targets, _ = self.head.encode_targets(targets)
            self.check_tokens(sources, targets)
        weights = check_sample_weight(sample_weight, len(sources))

        def make(index, train_split):
            ds = self.pairs_dataset(take(sources, index), take(targets, index), take(weights, index))
            return self.batch(ds, batch_size, len(index), shuffle=train_split and shuffle, seed=seed,
                              padding=padding if train_split else "dynamic")

        train, validation, index = build_splits(len(sources), make, validation_split, None, seed)
        return Prepared(train, validation, None, None, num_examples=len(index))
