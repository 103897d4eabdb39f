"""The text pipeline: strings, tables, files, folders, datasets and TFDS -> token batches.

Texts are tokenised once (and cached) by the backbone's keras-hub
preprocessor inside `tf.data`, then batched with *dynamic padding* (the
default): each batch is padded to its own longest sequence (never longer than
`sequence_length`). With `padding="bucket"` (or a list of bucket lengths)
shuffled training texts of similar length are batched together, and every
batch (in order, for validation, evaluation and prediction) is padded to the
smallest of a few fixed widths that holds its longest text; `"fixed"` pads to
`sequence_length`. Because the backbone masks padding, outputs equal those of
fixed padding.
Heads with per-word targets (`target_layout == "token"`: NER, tagging) have
each word tokenised on its own; its first sub-word carries the word's target
and every other position (later sub-words, start/end tokens, padding) gets
`IGNORE_INDEX`, which the loss skips. Where each word starts is kept as the
`Prepared.context`, so that a head can decode one tag per word.

Training-only augmentation (`FineTuner(augment={...})`) keeps the *strings*
of the training split in the cache, then, after shuffling, every epoch:
edits the words of each text, tokenises it and masks some of its tokens.
Targets and sample weights travel in the same `tf.data` element as their text.
"""

import os

import numpy as np

from finetunekit.core.data.constants import IGNORE_INDEX
from finetunekit.core.data.dataset_checks import check_dataset_labels
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
from finetunekit.core.data.text_buckets import (
    batch_examples,
    bucket_lengths,
    bucket_padder,
    check_padding,
    chunk_batches,
    is_bucketed,
    is_mode,
    sortish_batches,
)
from finetunekit.core.data.text_cleaning import clean_text, sanitize_utf8, to_utf8_bytes
from finetunekit.core.data.text_readers import (
    TEXT_FILE_TYPES,
    as_words,
    read_conll,
    text_sources,
)
from finetunekit.core.data.tfds import as_tfds, load_tfds_split, shuffled


class TextPipeline:
    """Prepares text data for one FineTuner.

    Args:
        head: the FineTuner's head (encodes and checks targets).
        preprocessor: the keras-hub preprocessor that tokenises strings.
        input_names: list of str. Model input names to keep.
        input_dtypes: dict. Dtype of each model input.
        clean: bool. Strip HTML tags, NFKC-normalise and collapse whitespace.
        augmentation: a `finetunekit.layers.TextAugmentation` applied to
            training data only (`prepare(training=True)`), or None.
    """

    def __init__(
        self, head, preprocessor, input_names, input_dtypes, clean=False, augmentation=None,
    ):
        self.head = head
        self.augmentation = augmentation
        self.preprocessor = preprocessor
        self.input_names = list(input_names)
        self.input_dtypes = dict(input_dtypes)
        self.clean = clean

    @property
    def sequence_length(self):
        return int(self.preprocessor.sequence_length)

    @property
    def pad_token_id(self):
        tokenizer = self.preprocessor.tokenizer
        value = getattr(tokenizer, "pad_token_id", None)
        return 0 if value is None else int(value)

    # ---------------------------------------------------------------- strings
    def clean_strings(self, strings):
        """Replaces invalid UTF-8 and (with `clean`) strips HTML and normalises unicode."""
        strings = sanitize_utf8(strings)
        if self.clean:
            strings = clean_text(strings)
        return strings

    def _encode_batch(self, strings):
        """Tokenises a batch of strings; returns the model inputs padded to sequence_length."""
        import tensorflow as tf

        out = self.preprocessor(self.clean_strings(strings))
        if isinstance(out, tuple):
            out = out[0]
        return {
            name: tf.cast(out[name], self.input_dtypes[name]) for name in self.input_names
        }

    @staticmethod
    def lengths(features):
        """Token count of one example (a scalar) or of each row of a batch."""
        import tensorflow as tf

        return tf.reduce_sum(tf.cast(features["padding_mask"], "int32"), axis=-1)

    def trim(self, features, *rest):
        """Cuts one example's padding: its tokens end where the padding mask ends."""
        length = self.lengths(features)
        features = {name: value[:length] for name, value in features.items()}
        return (features, *rest) if rest else features

    def _trim_batch(self, features):
        """Cuts a batch's padding to its longest example."""
        import tensorflow as tf

        longest = tf.reduce_max(self.lengths(features))
        return {name: value[:, :longest] for name, value in features.items()}

    def padding_values(self):
        import tensorflow as tf

        values = {}
        for name in self.input_names:
            value = self.pad_token_id if name == "token_ids" else 0
            values[name] = tf.constant(value, dtype=self.input_dtypes[name])
        return values

    def tokenized_dataset(self, texts):
        """Unbatched dataset of variable-length token dicts, one per text (order kept).

        `texts` is a list of texts, or an unbatched dataset of texts or of
        `(text, label, ...)` tuples. Labels stay in the same pipeline as their
        texts: zipping two passes over a shuffling dataset would pair texts
        with other examples' labels.
        """
        import tensorflow as tf

        if not is_dataset(texts):
            texts = tf.data.Dataset.from_tensor_slices(
                np.asarray([to_utf8_bytes(t) for t in texts], dtype=object)
            )

        def encode(strings, *rest):
            return (self._encode_batch(strings), *rest) if rest else self._encode_batch(strings)

        return (
            texts.batch(256)
            .map(encode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .unbatch()
            .map(self.trim, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        )

    def batch(self, ds, batch_size, padding="dynamic", target_pad=None, examples=None,
              keep_order=False):
        """Pads and batches an unbatched dataset of `features` or `(features, targets[, weights])`.

        Args:
            ds: dataset of token dicts (and targets and sample weights).
            batch_size: int.
            padding: `"dynamic"` (each batch padded to its longest sequence),
                `"bucket"` or a list of bucket lengths (similar lengths batched
                together and padded to one of a few widths, see
                `finetunekit.core.data.text_buckets`) or `"fixed"` (always
                `sequence_length`).
            target_pad: padding value of per-token targets, or None for
                per-example targets.
            examples: int or None. Number of examples, when known (bucketing
                then sorts within at least 4 chunks per epoch).
            keep_order: bool. Batches follow the stream's order (validation,
                evaluation, prediction); with bucket padding each batch is
                then padded to the smallest bucket width that holds it.

        Returns:
            A batched `tf.data.Dataset`.
        """
        import tensorflow as tf

        check_padding(padding)
        length = self.sequence_length if is_mode(padding, "fixed") else None
        shapes = {name: [length] for name in self.input_names}
        values = self.padding_values()
        spec = ds.element_spec
        if isinstance(spec, tuple):
            shapes, values = [shapes], [values]
            for i, part in enumerate(spec[1:]):
                per_token = i == 0 and target_pad is not None
                shapes.append(tf.TensorShape([length]) if per_token else part.shape)
                values.append(tf.constant(target_pad if per_token else 0, part.dtype))
            shapes, values = tuple(shapes), tuple(values)
        if not is_bucketed(padding):
            return ds.padded_batch(batch_size, padded_shapes=shapes, padding_values=values)
        buckets = bucket_lengths(padding, self.sequence_length)
        if keep_order:
            ds = ds.padded_batch(batch_size, padded_shapes=shapes, padding_values=values)
            return ds.map(bucket_padder(self, buckets, values, per_token=target_pad is not None))
        chunk = chunk_batches(examples, batch_size)
        return sortish_batches(self, ds, batch_size, shapes, values, buckets, chunk)

    # ----------------------------------------------------------------- public
    def prepare(
        self, x, y=None, *, class_names=None, batch_size=32, shuffle=False, validation_split=0.0,
        sample_weight=None, seed=None, x_col=None, y_col=None, require_labels=True,
        padding="dynamic", training=False,
    ):
        """Checks, tokenises and batches text.

        `training=True` (what `fit` passes for its training data) applies the
        text augmentation, if any, to the training split only.

        Returns:
            A `Prepared` whose `Batches` hold batched `tf.data.Dataset`s.
        """
        check_padding(padding)
        token_level = self.head.target_layout == "token"
        augment = training and self.augmentation is not None
        if augment:
            self.check_augmentable(token_level)
        source = as_tfds(x)
        if source is not None:
            if token_level:
                raise ValueError(
                    f"TFDS data {source!r} is not supported for token classification; pass "
                    "word lists and tags, or a CoNLL file."
                )
            ds, names = load_tfds_split(source, y, validation_split)
            ds = self._from_dataset(
                shuffled(ds, shuffle, seed), batch_size, padding, train=shuffle, augment=augment
            )
            return Prepared(Batches(ds), class_names=class_names or names)
        if is_dataset(x):
            no_split_for_datasets(validation_split)
            if token_level and not _yields_model_inputs(x):
                # Tokenised whole, texts lose where each word starts: no tag per word to fit
                # on, and predictions of batches of other lengths do not concatenate.
                raise ValueError(
                    "A tf.data.Dataset of texts is not supported for token classification; pass "
                    "word lists and tags, or a CoNLL file."
                )
            check_dataset_labels(x, self.head, class_names, batched=_is_batched(x))
            ds = self._from_dataset(x, batch_size, padding, augment=augment)
            return Prepared(Batches(ds), class_names=class_names)
        if token_level:
            return self.prepare_words(
                x, y, class_names=class_names, batch_size=batch_size, shuffle=shuffle,
                validation_split=validation_split, sample_weight=sample_weight, seed=seed,
                x_col=x_col, y_col=y_col, require_labels=require_labels, padding=padding,
            )
        texts, labels, folder_classes = text_sources(x, y, x_col, y_col)
        if folder_classes is not None and class_names is None:
            class_names = folder_classes
        check_lengths(len(texts), labels, "texts")
        weights = check_sample_weight(sample_weight, len(texts))
        if labels is None and require_labels:
            raise ValueError("No labels: pass y=... (or a folder with class sub-folders).")
        targets = None
        if labels is not None:
            targets, class_names = self.head.encode_targets(labels, class_names)

        make = self._split_maker(texts, targets, weights, batch_size, padding, shuffle, seed, augment)
        train, validation, index = build_splits(len(texts), make, validation_split, targets, seed)
        return Prepared(
            train, validation, class_names, take(targets, index), num_examples=len(index)
        )

    def _split_maker(self, texts, targets, weights, batch_size, padding, shuffle, seed, augment):
        """`make(index, train_split) -> Batches` for `build_splits` (augmenting the training split)."""

        def make(index, train_split):
            extras = (take(targets, index), take(weights, index))
            if augment and train_split:
                return self.finish_augmented(
                    take(texts, index), extras, len(index), batch_size, padding,
                    shuffle=shuffle, seed=seed,
                )
            ds = self.tokenized_dataset(take(texts, index))
            return self.finish(
                ds, extras, len(index), batch_size, padding, shuffle=train_split and shuffle,
                seed=seed,
            )

        return make

    def finish(
        self, ds, extras, n, batch_size, padding, shuffle=False, seed=None, target_pad=None,
        per_epoch=None, keep_order=None,
    ):
        """Zips `extras` (targets, weights; None ones left out) with `ds`, caches, shuffles, batches.

        `per_epoch`, if given, maps the shuffled (uncached) stream before
        batching, so that it runs anew every epoch (text augmentation).
        Batches keep the stream's order unless shuffling (`keep_order`
        overrides: bucketing groups similar lengths only in shuffled
        training data).

        Returns:
            `Batches` of a prefetched dataset of known cardinality.
        """
        import tensorflow as tf

        extras = [tf.data.Dataset.from_tensor_slices(e) for e in extras if e is not None]
        if extras:
            ds = tf.data.Dataset.zip((ds, *extras))
        def batch(examples):
            examples = per_epoch(examples) if per_epoch is not None else examples
            return self.batch(
                examples, batch_size, padding, target_pad=target_pad, examples=n,
                keep_order=not shuffle if keep_order is None else keep_order,
            )

        return Batches(batch_examples(ds, n, batch_size, batch, shuffle, seed))

    def _encode_batches(self, ds, trim=True):
        """Tokenises each batch of a batched dataset of strings (or `(strings, labels, ...)`)."""
        import tensorflow as tf

        def encode(texts, *rest):
            features = self._encode_batch(texts)
            if trim:
                features = self._trim_batch(features)
            return (features, *rest) if rest else features

        return ds.map(encode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(
            tf.data.AUTOTUNE
        )

    def _from_dataset(self, ds, batch_size, padding, train=False, augment=False):
        """Tokenises a dataset of strings or `(strings, labels)` (batched or not).

        A batched dataset keeps its own batches (as Keras does with datasets),
        each padded to its longest text unless `padding="fixed"`. An unbatched
        one is batched here, in order unless `train` is set (then
        `padding="bucket"` groups similar lengths); `augment` applies the text
        augmentation (unbatched strings only).
        """
        import tensorflow as tf

        spec = ds.element_spec
        first = spec[0] if isinstance(spec, tuple) else spec
        if augment and (isinstance(first, dict) or first.shape.rank):
            raise ValueError(
                "Text augmentation edits the strings of an unbatched dataset; this dataset yields "
                f"{'model inputs' if isinstance(first, dict) else 'batches'}. Pass "
                "ds.unbatch() of (text, label) pairs (fit batches it), or remove augment=."
            )
        if isinstance(first, dict):
            return ds  # already model inputs
        if first.dtype != tf.string:
            raise ValueError(
                "A text dataset must yield strings, (strings, labels) or (strings, labels, "
                f"sample_weights). Received: {spec}"
            )
        if first.shape.rank and first.shape.rank > 0:
            return self._encode_batches(ds, trim=not is_mode(padding, "fixed"))
        examples = int(ds.cardinality())  # -1 / -2: unknown / infinite
        if augment:
            ds = self.augmented_tokens(ds)  # (text, label, sample_weight) stay together
        else:
            ds = self.tokenized_dataset(ds)
        ds = self.batch(ds, batch_size, padding, examples=examples, keep_order=not train)
        if examples >= 0:
            ds = ds.apply(tf.data.experimental.assert_cardinality(-(-examples // batch_size)))
        return ds.prefetch(tf.data.AUTOTUNE)

    def special_id(self, *names):
        """The first of the tokenizer's `names` ids that exists (the pad id otherwise)."""
        tokenizer = self.preprocessor.tokenizer
        for name in names:
            value = getattr(tokenizer, name, None)
            if value is not None:
                return int(value)
        return self.pad_token_id

    def _word_pieces(self, sentences):
        import tensorflow as tf

        flat = [to_utf8_bytes(w) for s in sentences for w in s]
        if not flat:
            return []
        strings = self.clean_strings(tf.constant(np.asarray(flat, dtype=object)))
        pieces = self.preprocessor.tokenizer(strings)
        pieces = pieces.to_list() if hasattr(pieces, "to_list") else list(pieces)
        return [list(np.asarray(p).reshape(-1)) for p in pieces]

    def encode_words(self, sentences):
        """Tokenises lists of words, keeping where each word starts.

        Args:
            self: a `TextPipeline` (tokenizer, sequence length, cleaning).
            sentences: list of word lists (or strings, split on whitespace).

        Returns:
            `(token_ids, word_starts)`: per sentence, the token ids (with the
            start and end tokens, at most `sequence_length`) and, per word, the
            index of its first sub-word (None for words cut by truncation).
        """
        sentences = [as_words(s) for s in sentences]
        pieces = self._word_pieces(sentences)
        start = self.special_id("cls_token_id", "start_token_id", "bos_token_id")
        end = self.special_id("sep_token_id", "end_token_id", "eos_token_id")
        unknown = self.special_id("unk_token_id", "oov_token_id")
        length = self.sequence_length
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

    def token_features(self, token_ids):
        """Dense `(n, longest)` model inputs of token id lists (trimmed again per example)."""
        longest = max(len(ids) for ids in token_ids)
        ids = np.full((len(token_ids), longest), self.pad_token_id, dtype="int64")
        mask = np.zeros_like(ids)
        for i, row in enumerate(token_ids):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        features = {"token_ids": ids, "padding_mask": mask, "segment_ids": np.zeros_like(ids)}
        return {
            name: features[name].astype(np.dtype(self.input_dtypes[name]))
            for name in self.input_names
        }

    def prepare_words(
        self, x, y, *, class_names, batch_size, shuffle, validation_split, sample_weight, seed,
        x_col, y_col, require_labels, padding,
    ):
        """`TextPipeline.prepare` for heads with one target per word. Returns a `Prepared`."""
        x, y = _read(x, y, x_col, y_col)
        sentences = [as_words(s) for s in x]
        if not sentences:
            raise ValueError("No texts: the data is empty.")
        if y is None and require_labels:
            raise ValueError("No tags: pass y=[[tag, ...], ...] with one tag per word.")
        if y is not None and len(y) != len(sentences):
            raise ValueError(f"{len(sentences)} sentences but {len(y)} tag lists.")
        weights = check_sample_weight(sample_weight, len(sentences))
        token_ids, starts = self.encode_words(sentences)
        rows = None
        if y is not None:
            tags, class_names = self.head.encode_targets(y, class_names)
            rows = align_targets(token_ids, starts, tags)

        def make(index, training):
            import tensorflow as tf

            features = self.token_features(take(token_ids, index))
            parts = [features]
            if rows is not None:
                targets = np.full(features["token_ids"].shape, IGNORE_INDEX, dtype="int32")
                for row, j in enumerate(index):
                    targets[row, : len(rows[j])] = rows[j]
                parts.append(targets)
            if weights is not None and rows is not None:
                parts.append(weights[index])
            ds = tf.data.Dataset.from_tensor_slices(tuple(parts) if len(parts) > 1 else features)
            ds = ds.map(self._trim_tokens())
            # predict concatenates batches: give them one length
            mode = padding if rows is not None else "fixed"
            return self.finish(
                ds, (), len(index), batch_size, mode, shuffle=training and shuffle, seed=seed,
                target_pad=IGNORE_INDEX, keep_order=True,
            )

        train, validation, index = build_splits(len(sentences), make, validation_split, None, seed)
        return Prepared(
            train, validation, class_names, num_examples=len(index), context=take(starts, index)
        )

    def _trim_tokens(self):
        def trim(features, *rest):
            length = self.lengths(features)
            features = {name: value[:length] for name, value in features.items()}
            if rest:
                rest = (rest[0][:length], *rest[1:])
            return (features, *rest) if rest else features

        return trim

    def check_augmentable(self, token_level):
        """Raises when this pipeline's augmentation cannot run (per-word targets, no mask token)."""
        augmentation = self.augmentation
        if token_level:
            raise ValueError(
                "Text augmentation (random_deletion, random_swap, token_mask) supports heads with one "
                "target per text; a TokenClassificationHead has one tag per word, which edits would "
                "misalign. Remove augment= for this head."
            )
        if augmentation.token_mask and self.mask_token_id() is None:
            tokenizer = self.preprocessor.tokenizer
            raise ValueError(
                f"token_mask={augmentation.token_mask} needs the tokenizer's mask token, but "
                f"{type(tokenizer).__name__} has none. Use random_deletion / random_swap instead."
            )

    def mask_token_id(self):
        value = getattr(self.preprocessor.tokenizer, "mask_token_id", None)
        return None if value is None else int(value)

    def special_token_ids(self):
        """Token ids never masked: the tokenizer's special tokens (start, end, padding, ...)."""
        tokenizer = self.preprocessor.tokenizer
        ids = getattr(tokenizer, "special_token_ids", None)
        if ids is None:
            names = ("cls_token_id", "sep_token_id", "pad_token_id", "start_token_id", "end_token_id")
            ids = [getattr(tokenizer, name, None) for name in names]
        return sorted({int(i) for i in ids if i is not None})

    def augmented_tokens(self, ds):
        """Unbatched `(text, ...)` strings -> edited, tokenised, masked `(features, ...)` per epoch.

        Args:
            self: a `TextPipeline` with an `augmentation`.
            ds: unbatched dataset of strings or of `(string, target[, weight])`.

        Returns:
            An unbatched dataset of token dicts (with the same targets and weights).
        """
        import tensorflow as tf

        augmentation = self.augmentation
        if augmentation.edits_words:

            def edit(element, seed):
                if isinstance(element, tuple):
                    return (augmentation.augment_text(element[0], seed), *element[1:])
                return augmentation.augment_text(element, seed)

            ds = tf.data.Dataset.zip((ds, augmentation.random_seeds())).map(
                edit, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
            )
        ds = self.tokenized_dataset(ds)
        if augmentation.token_mask:
            mask_id, special = self.mask_token_id(), self.special_token_ids()

            def mask(element, seed):
                features = element[0] if isinstance(element, tuple) else element
                features = dict(features)
                features["token_ids"] = augmentation.mask_tokens(
                    features["token_ids"], features["padding_mask"], seed, mask_id, special
                )
                return (features, *element[1:]) if isinstance(element, tuple) else features

            ds = tf.data.Dataset.zip((ds, augmentation.random_seeds())).map(
                mask, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
            )
        return ds

    def finish_augmented(self, texts, extras, n, batch_size, padding, shuffle=False, seed=None):
        """`TextPipeline.finish` for augmented training text: cache strings, shuffle, augment, batch.

        Returns:
            `Batches` of a prefetched dataset of known cardinality.
        """
        import numpy as np
        import tensorflow as tf

        from finetunekit.core.data.text_cleaning import to_utf8_bytes

        ds = tf.data.Dataset.from_tensor_slices(np.asarray([to_utf8_bytes(t) for t in texts], object))
        return self.finish(
            ds, extras, n, batch_size, padding, shuffle=shuffle, seed=seed,
            per_epoch=lambda shuffled: self.augmented_tokens(shuffled),
        )

def _yields_model_inputs(ds):
    """Whether a text dataset yields model-input dicts (token ids ...) rather than strings."""
    return isinstance(ds.element_spec[0] if isinstance(ds.element_spec, tuple) else ds.element_spec,
                      dict)


def _is_batched(ds):
    """Whether a text dataset yields batches: strings of rank >= 1, or model-input dicts."""
    first = ds.element_spec[0] if isinstance(ds.element_spec, tuple) else ds.element_spec
    return isinstance(first, dict) or bool(first.shape.rank)


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
