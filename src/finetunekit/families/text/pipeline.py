"""The text pipeline: strings, tables, files, folders, datasets and TFDS -> token batches.

Texts are tokenised once (and cached) by the backbone's keras-hub
preprocessor inside `tf.data`, then batched with *dynamic padding*: each batch
is padded to its own longest sequence (never longer than `sequence_length`),
or, with `padding="bucket"` (or a list of bucket lengths), examples of similar
length are batched together and padded to one of a few fixed widths.
Because the backbone masks padding, outputs equal those of fixed padding.
Heads with per-word targets (`target_layout == "token"`) go through
`finetunekit.families.text.token_pipeline`.
"""

import numpy as np

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
    PADDINGS,
    bucket_lengths,
    check_padding,
    chunk_batches,
    is_bucketed,
    is_mode,
    ordered,
    sortish_batches,
)
from finetunekit.core.data.text_readers import text_sources
from finetunekit.core.data.tfds import as_tfds, load_tfds_split, shuffled
from finetunekit.core.data.text_cleaning import clean_text, sanitize_utf8, to_utf8_bytes


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

    def batch(self, ds, batch_size, padding="dynamic", target_pad=None, examples=None):
        """Pads and batches an unbatched dataset of `features` or `(features, targets[, weights])`.

        Args:
            ds: dataset of token dicts (and targets and sample weights).
            batch_size: int.
            padding: `"dynamic"` (each batch padded to its longest sequence),
                `"bucket"` or a list of bucket lengths (similar lengths batched
                together, padded to bucket widths, order not kept; see
                `finetunekit.core.data.text_buckets`) or `"fixed"` (always `sequence_length`).
            target_pad: padding value of per-token targets, or None for
                per-example targets.
            examples: int or None. Number of examples, when known (bucketing
                then sorts within at least 4 chunks per epoch).
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
        if is_bucketed(padding):
            buckets = bucket_lengths(padding, self.sequence_length)
            chunk = chunk_batches(examples, batch_size)
            return sortish_batches(self, ds, batch_size, shapes, values, buckets, chunk)
        return ds.padded_batch(batch_size, padded_shapes=shapes, padding_values=values)

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
            from finetunekit.families.text.augment_pipeline import check_augmentable

            check_augmentable(self, token_level)
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
            from finetunekit.families.text.token_pipeline import prepare_words

            return prepare_words(
                self, x, y, class_names=class_names, batch_size=batch_size, shuffle=shuffle,
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
            order = padding if train_split and shuffle else ordered(padding)
            if augment and train_split:
                from finetunekit.families.text.augment_pipeline import finish_augmented

                return finish_augmented(
                    self, take(texts, index), extras, len(index), batch_size, order,
                    shuffle=shuffle, seed=seed,
                )
            ds = self.tokenized_dataset(take(texts, index))
            return self.finish(
                ds, extras, len(index), batch_size, order, shuffle=train_split and shuffle,
                seed=seed,
            )

        return make

    def finish(
        self, ds, extras, n, batch_size, padding, shuffle=False, seed=None, target_pad=None,
        per_epoch=None,
    ):
        """Zips `extras` (targets, weights; None ones left out) with `ds`, caches, shuffles, batches.

        `per_epoch`, if given, maps the shuffled (uncached) stream before
        batching, so that it runs anew every epoch (text augmentation).

        Returns:
            `Batches` of a prefetched dataset of known cardinality.
        """
        import tensorflow as tf

        extras = [tf.data.Dataset.from_tensor_slices(e) for e in extras if e is not None]
        if extras:
            ds = tf.data.Dataset.zip((ds, *extras))
        ds = ds.cache()
        if shuffle:
            ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
        if per_epoch is not None:
            ds = per_epoch(ds)
        ds = self.batch(ds, batch_size, padding, target_pad=target_pad, examples=n)
        ds = ds.apply(tf.data.experimental.assert_cardinality(-(-n // batch_size)))
        return Batches(ds.prefetch(tf.data.AUTOTUNE))

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
            from finetunekit.families.text.augment_pipeline import augmented_tokens

            ds = augmented_tokens(self, ds)  # (text, label, sample_weight) stay together
        else:
            ds = self.tokenized_dataset(ds)
        ds = self.batch(
            ds, batch_size, padding if train else ordered(padding), examples=examples
        )
        if examples >= 0:
            ds = ds.apply(tf.data.experimental.assert_cardinality(-(-examples // batch_size)))
        return ds.prefetch(tf.data.AUTOTUNE)


def _yields_model_inputs(ds):
    """Whether a text dataset yields model-input dicts (token ids ...) rather than strings."""
    return isinstance(ds.element_spec[0] if isinstance(ds.element_spec, tuple) else ds.element_spec,
                      dict)


def _is_batched(ds):
    """Whether a text dataset yields batches: strings of rank >= 1, or model-input dicts."""
    first = ds.element_spec[0] if isinstance(ds.element_spec, tuple) else ds.element_spec
    return isinstance(first, dict) or bool(first.shape.rank)
