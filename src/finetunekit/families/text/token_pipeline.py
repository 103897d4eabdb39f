"""Word-level targets (NER, tagging): words -> sub-word tokens, one target per word.

Each word is tokenised on its own; its first sub-word carries the word's
target and every other position (later sub-words, start/end tokens, padding)
gets `IGNORE_INDEX`, which the loss skips. Where each word starts is kept as
the `Prepared.context`, so that a head can decode one tag per word.
"""

import os

import numpy as np

from finetunekit.core.data.constants import IGNORE_INDEX
from finetunekit.core.data.pipeline import Prepared, build_splits, check_sample_weight, take
from finetunekit.core.data.text_readers import TEXT_FILE_TYPES, as_words, read_conll, text_sources
from finetunekit.core.data.text_cleaning import to_utf8_bytes


def special_id(pipeline, *names):
    """The first of the tokenizer's `names` ids that exists (the pad id otherwise)."""
    tokenizer = pipeline.preprocessor.tokenizer
    for name in names:
        value = getattr(tokenizer, name, None)
        if value is not None:
            return int(value)
    return pipeline.pad_token_id


def _word_pieces(pipeline, sentences):
    import tensorflow as tf

    flat = [to_utf8_bytes(w) for s in sentences for w in s]
    if not flat:
        return []
    strings = pipeline.clean_strings(tf.constant(np.asarray(flat, dtype=object)))
    pieces = pipeline.preprocessor.tokenizer(strings)
    pieces = pieces.to_list() if hasattr(pieces, "to_list") else list(pieces)
    return [list(np.asarray(p).reshape(-1)) for p in pieces]


def encode_words(pipeline, sentences):
    """Tokenises lists of words, keeping where each word starts.

    Args:
        pipeline: a `TextPipeline` (tokenizer, sequence length, cleaning).
        sentences: list of word lists (or strings, split on whitespace).

    Returns:
        `(token_ids, word_starts)`: per sentence, the token ids (with the
        start and end tokens, at most `sequence_length`) and, per word, the
        index of its first sub-word (None for words cut by truncation).
    """
    sentences = [as_words(s) for s in sentences]
    pieces = _word_pieces(pipeline, sentences)
    start = special_id(pipeline, "cls_token_id", "start_token_id", "bos_token_id")
    end = special_id(pipeline, "sep_token_id", "end_token_id", "eos_token_id")
    unknown = special_id(pipeline, "unk_token_id", "oov_token_id")
    length = pipeline.sequence_length
    all_ids, all_starts, k = [], [], 0
    for words in sentences:
        ids, starts = [start], []
        for _ in words:
            piece = list(pieces[k]) or [unknown]
            k += 1
            if len(ids) + len(piece) > length - 1:
                starts.append(None)
                continue
            starts.append(len(ids))
            ids += piece
        ids.append(end)
        all_ids.append(ids)
        all_starts.append(starts)
    return all_ids, all_starts


def token_features(pipeline, token_ids):
    """Dense `(n, longest)` model inputs of token id lists (trimmed again per example)."""
    longest = max(len(ids) for ids in token_ids)
    ids = np.full((len(token_ids), longest), pipeline.pad_token_id, dtype="int64")
    mask = np.zeros_like(ids)
    for i, row in enumerate(token_ids):
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    features = {"token_ids": ids, "padding_mask": mask, "segment_ids": np.zeros_like(ids)}
    return {
        name: features[name].astype(np.dtype(pipeline.input_dtypes[name]))
        for name in pipeline.input_names
    }


def align_targets(token_ids, starts, tags):
    """Per-token target rows: each word's tag at its first sub-word, `IGNORE_INDEX` elsewhere."""
    rows = []
    for i, (ids, word_starts, word_tags) in enumerate(zip(token_ids, starts, tags, strict=True)):
        if len(word_tags) != len(word_starts):
            raise ValueError(
                f"Sentence {i} has {len(word_starts)} words but {len(word_tags)} tags."
            )
        row = np.full(len(ids), IGNORE_INDEX, dtype="int32")
        for position, tag in zip(word_starts, word_tags, strict=True):
            if position is not None:
                row[position] = int(tag)
        rows.append(row)
    return rows


def _read(x, y, x_col, y_col):
    if isinstance(x, (str, os.PathLike)) and os.path.isfile(x) and not os.fspath(
        x
    ).lower().endswith(TEXT_FILE_TYPES):
        return read_conll(x)
    x, y, _ = text_sources(x, y, x_col, y_col)
    return x, y


def prepare_words(
    pipeline, x, y, *, class_names, batch_size, shuffle, validation_split, sample_weight, seed,
    x_col, y_col, require_labels, padding,
):
    """`TextPipeline.prepare` for heads with one target per word. Returns a `Prepared`."""
    from finetunekit.core.data.text_buckets import ordered

    x, y = _read(x, y, x_col, y_col)
    sentences = [as_words(s) for s in x]
    if not sentences:
        raise ValueError("No texts: the data is empty.")
    if y is None and require_labels:
        raise ValueError("No tags: pass y=[[tag, ...], ...] with one tag per word.")
    if y is not None and len(y) != len(sentences):
        raise ValueError(f"{len(sentences)} sentences but {len(y)} tag lists.")
    weights = check_sample_weight(sample_weight, len(sentences))
    token_ids, starts = encode_words(pipeline, sentences)
    rows = None
    if y is not None:
        tags, class_names = pipeline.head.encode_targets(y, class_names)
        rows = align_targets(token_ids, starts, tags)

    def make(index, training):
        import tensorflow as tf

        features = token_features(pipeline, take(token_ids, index))
        parts = [features]
        if rows is not None:
            targets = np.full(features["token_ids"].shape, IGNORE_INDEX, dtype="int32")
            for row, j in enumerate(index):
                targets[row, : len(rows[j])] = rows[j]
            parts.append(targets)
        if weights is not None and rows is not None:
            parts.append(weights[index])
        ds = tf.data.Dataset.from_tensor_slices(tuple(parts) if len(parts) > 1 else features)
        ds = ds.map(_trim_tokens(pipeline))
        # predict concatenates batches: give them one length
        mode = ordered(padding) if rows is not None else "fixed"
        return pipeline.finish(
            ds, (), len(index), batch_size, mode, shuffle=training and shuffle, seed=seed,
            target_pad=IGNORE_INDEX,
        )

    train, validation, index = build_splits(len(sentences), make, validation_split, None, seed)
    return Prepared(
        train, validation, class_names, num_examples=len(index), context=take(starts, index)
    )


def _trim_tokens(pipeline):
    def trim(features, *rest):
        length = pipeline.lengths(features)
        features = {name: value[:length] for name, value in features.items()}
        if rest:
            rest = (rest[0][:length], *rest[1:])
        return (features, *rest) if rest else features

    return trim
