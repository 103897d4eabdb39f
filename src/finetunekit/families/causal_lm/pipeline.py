"""The instruction-tuning pipeline: SFT records -> next-token batches with a loss mask.

Records come in any form `to_examples` reads (prompt/completion, Alpaca,
messages, text; lists of dicts, DataFrames, JSON/JSONL/CSV/Parquet files),
as two lists (prompts in `x`, responses in `y`), or as a `tf.data.Dataset` of
record dicts. Each conversation is rendered with the head's chat template and
tokenised with the loss mask of `tokenize_examples` (the assistant turns, or
everything with `train_on="all"`); inputs are the tokens but the last, labels
the tokens shifted by one and the per-token sample weight the shifted mask
(times any per-example `sample_weight`). Each batch is padded to its own
longest example (dynamic padding); `padding="bucket"` groups training examples
of similar length (sortish, as the seq2seq pipeline); a packing head packs
training examples into rows (`packing.pack_examples`).
"""

import numpy as np

from finetunekit.core.data.pipeline import (
    Batches,
    Prepared,
    build_splits,
    check_sample_weight,
    is_dataset,
    take,
)
from finetunekit.core.data.text_buckets import (
    batch_examples,
    bucket_lengths,
    bucket_width,
    check_padding,
    chunk_batches,
    is_bucketed,
    is_mode,
    pad_to,
    padded_batches,
    sortish,
)


def _plain(value):
    """A Python value of a dataset element (bytes decoded, arrays as lists)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, dict):
        return {key: _plain(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value.item() if hasattr(value, "item") else value


#: Record fields that hold one string per record (a batched dataset gives vectors of them).
SCALAR_FIELDS = ("prompt", "completion", "instruction", "input", "output", "system", "text")


def dataset_records(ds):
    """The record dicts of a `tf.data.Dataset`, batched (it is unbatched here) or not.

    A dataset is batched when its string fields (`prompt`, `completion`,
    `text`, ...) are vectors rather than scalars, as peers treat a batched
    dataset of strings; each batch is split back into records, in order.

    Args:
        ds: a `tf.data.Dataset` of record dicts.

    Returns:
        A list of dicts of Python values.

    Raises:
        ValueError: the dataset does not yield dicts.
    """
    spec = ds.element_spec
    if not isinstance(spec, dict):
        raise ValueError(
            "A tf.data.Dataset for an InstructionHead must yield record dicts (e.g. "
            "{'prompt': ..., 'completion': ...} or {'text': ...}), batched or not; this one "
            f"yields {type(spec).__name__}. Map it to dicts, e.g. "
            "ds.map(lambda p, c: {'prompt': p, 'completion': c})."
        )
    ranks = [spec[name].shape.rank for name in SCALAR_FIELDS if hasattr(spec.get(name), "shape")]
    if ranks and all(rank is not None and rank >= 1 for rank in ranks):
        ds = ds.unbatch()
    return [_plain(element) for element in ds.as_numpy_iterator()]


def read_examples(x, y=None, warn=True):
    """`Example`s of SFT records, of prompts `x` with responses `y`, or of a dataset of records.

    Args:
        x: records (list of dicts, DataFrame, file path), a list of prompts
            (with `y`), or a `tf.data.Dataset` of record dicts (batched or not).
        y: list of responses (one per prompt), or None.
        warn: warn about suspicious data (see `to_examples`).

    Returns:
        A list of `Example`.

    Example:
    ```python
    read_examples(["Say hi."], ["Hi!"])[0].messages[1]["content"]  # "Hi!"
    ```
    """
    from finetunekit.families.causal_lm.records import to_examples

    if is_dataset(x):
        x = dataset_records(x)
    if y is not None:
        prompts = [x] if isinstance(x, str) else list(x)
        answers = [y] if isinstance(y, str) else list(y)
        if len(prompts) != len(answers):
            raise ValueError(
                f"Prompts and responses must pair up: {len(prompts)} prompts but "
                f"{len(answers)} responses."
            )
        x = [{"prompt": p, "completion": c} for p, c in zip(prompts, answers)]
    elif isinstance(x, (list, tuple)) and x and all(isinstance(item, str) for item in x):
        x = [{"text": text} for text in x]
    return to_examples(x, warn=warn)


def kept_weights(weights, tokenized):
    """The per-example `weights` of the examples that tokenising kept (None stays None).

    `tokenize_examples` drops examples (`on_too_long="drop"`, no room for a
    response); each `TokenizedExample` knows its input `index`, so a weight
    stays with its own example.
    """
    if weights is None:
        return None
    return weights[np.asarray([ex.index for ex in tokenized], "int64")]


class CausalLMPipeline:
    """Prepares SFT records for a FineTuner with an `InstructionHead`.

    Args:
        head: the `InstructionHead`.
        kind: the `CausalLMBackbone` (tokenizer, sequence length, input dtypes).
        trains: bool. Whether any backbone weight trains.
    """

    def __init__(self, head, kind, trains=True):
        self.head = head
        self.kind = kind
        self.trains = trains

    @property
    def pad_token_id(self):
        value = getattr(self.kind.tokenizer, "pad_token_id", None)
        return 0 if value is None else int(value)

    def tokenize(self, examples):
        """`TokenizedExample`s of `examples` (truncation warned about with counts)."""
        from finetunekit.families.causal_lm.tokenization import tokenize_examples

        limit = self.head.max_length or self.kind.sequence_length
        tokenized, report = tokenize_examples(
            examples, self.kind.tokenizer, self.head.template(self.kind),
            sequence_length=limit + 1, train_on=self.head.train_on,
            on_too_long=self.head.on_too_long,
        )
        report.warn(limit + 1)
        if not tokenized:
            raise ValueError(
                f"No example fits sequence_length={limit} tokens with room for its response "
                f"({report.examples} examples, longest {report.longest} tokens). Raise "
                "sequence_length (or InstructionHead(max_length=...)) or shorten the prompts."
            )
        return tokenized

    def examples_dataset(self, tokenized, weights=None):
        """Unbatched dataset of `(x, y, sample_weight)`, one per example (order kept).

        `x` holds `token_ids` and `padding_mask`, or for a packing head
        `token_ids`, `segment_ids` (1 on the example, 0 on padding) and
        `position_ids` (`0..n-1`): a row of one example.
        """
        import tensorflow as tf

        lengths = np.asarray([len(ex) - 1 for ex in tokenized], "int32")
        width = int(lengths.max())
        ids = np.full((len(tokenized), width + 1), self.pad_token_id, "int32")
        mask = np.zeros((len(tokenized), width + 1), "float32")
        for row, ex in enumerate(tokenized):
            ids[row, : len(ex)] = ex.token_ids
            mask[row, : len(ex)] = ex.loss_mask
        scale = np.ones(len(tokenized), "float32") if weights is None else weights
        packing = self.head.packing
        mask_dtype = None if packing else self.kind.model.input["padding_mask"].dtype

        def trim(row_ids, row_mask, length, weight):
            if packing:
                x = {"token_ids": row_ids[:length], "segment_ids": tf.ones([length], "int32"),
                     "position_ids": tf.range(length, dtype="int32")}
            else:
                x = {"token_ids": row_ids[:length],
                     "padding_mask": tf.cast(tf.ones([length], "int32"), mask_dtype)}
            return x, row_ids[1 : length + 1], row_mask[1 : length + 1] * weight

        ds = tf.data.Dataset.from_tensor_slices((ids, mask, lengths, scale))
        return ds.map(trim, num_parallel_calls=tf.data.AUTOTUNE)

    def packed_rows(self, tokenized, weights=None):
        """`(x, y, sample_weight)` arrays of `tokenized` packed into rows (`pack_examples`).

        Each example is shifted before packing (inputs its tokens but the
        last, labels the tokens after), so no label crosses from one example
        into the next; the weights are its own loss mask times its weight.
        Rows are as wide as the fullest one (at most the sequence length).

        Returns:
            `(x, labels, weights)`: `x` a dict of int32 `(rows, width)` arrays
            `token_ids`, `segment_ids`, `position_ids`.
        """
        from finetunekit.families.causal_lm.packing import pack_examples

        limit = self.head.max_length or self.kind.sequence_length
        shifted = [{"token_ids": ex.token_ids[:-1], "loss_mask": ex.loss_mask[1:]}
                   for ex in tokenized]
        packed = pack_examples(shifted, limit, pad_id=self.pad_token_id)
        place = packed["placements"]
        width = int((place[:, 1] + place[:, 2]).max())
        labels = np.full((len(packed["token_ids"]), width), self.pad_token_id, "int32")
        weight = np.zeros(labels.shape, "float32")
        scale = np.ones(len(tokenized), "float32") if weights is None else weights
        for ex, (row, start, n), factor in zip(tokenized, place, scale):
            labels[row, start : start + n] = ex.token_ids[1:]
            weight[row, start : start + n] = ex.loss_mask[1:] * factor
        x = {name: packed[name][:, :width] for name in ("token_ids", "segment_ids", "position_ids")}
        return x, labels, weight

    def packed_batches(self, tokenized, weights, batch_size, shuffle=False, seed=None):
        """Batches of packed rows (shuffled each epoch when `shuffle`); `batch_size` counts rows."""
        import tensorflow as tf

        x, labels, weight = self.packed_rows(tokenized, weights)
        rows = len(labels)
        ds = tf.data.Dataset.from_tensor_slices((x, labels, weight))
        batch = lambda examples: examples.batch(batch_size)  # noqa: E731 - rows are equal-length
        return Batches(batch_examples(ds, rows, batch_size, batch, shuffle, seed))

    def padding_values(self):
        """`(shapes, values)` of `padded_batch` for one-example rows."""
        import tensorflow as tf

        pad = tf.constant(self.pad_token_id, "int32")
        if self.head.packing:
            zero = tf.constant(0, "int32")
            features = {"token_ids": pad, "segment_ids": zero, "position_ids": zero}
        else:
            mask_dtype = self.kind.model.input["padding_mask"].dtype
            masked = tf.constant(False) if mask_dtype == "bool" else tf.constant(0, mask_dtype)
            features = {"token_ids": pad, "padding_mask": masked}
        values = (features, pad, tf.constant(0.0, "float32"))
        shapes = ({name: [None] for name in features}, [None], [None])
        return shapes, values

    def batch(self, ds, batch_size, n, shuffle=False, seed=None, padding="dynamic"):
        """Batches of one-example rows: each padded to its longest, or sortish length buckets.

        With `padding="bucket"` (or a list of bucket lengths) and `shuffle`,
        the shuffled examples are grouped by length as the seq2seq and text
        pipelines do (`text_buckets.sortish`): every example once an epoch,
        `ceil(n / batch_size)` batches, each padded to a bucket width.
        """
        shapes, values = self.padding_values()
        return Batches(padded_batches(ds, n, batch_size, shapes, values, self._bucketed, padding,
                                      shuffle, seed))

    def _bucketed(self, ds, batch_size, n, shapes, values, padding):
        """Sortish batches by example length, each padded to the smallest bucket that holds it."""
        import tensorflow as tf

        limit = self.head.max_length or self.kind.sequence_length
        buckets = tf.constant(bucket_lengths(padding, limit), "int32")

        def lengths(x):
            mask = x["segment_ids"] if "segment_ids" in x else x["padding_mask"]
            return tf.reduce_sum(tf.cast(tf.cast(mask, "bool"), "int32"), axis=-1)

        def to_bucket(x, y, weight):
            width = bucket_width(buckets, tf.reduce_max(lengths(x)))
            x = {name: pad_to(value, width, values[0][name]) for name, value in x.items()}
            return x, pad_to(y, width, values[1]), pad_to(weight, width, values[2])

        return sortish(ds, batch_size, shapes, values, lambda element: lengths(element[0]),
                       to_bucket, chunk_batches(n, batch_size))

    def _check(self, x, training, padding):
        if training and not self.trains:
            raise ValueError(
                "An InstructionHead has no weights of its own, and with unfreeze=0 the backbone "
                'is frozen: nothing would train. Pass lora_rank=8, or unfreeze="all" (or a '
                "number of blocks)."
            )
        check_padding(padding)
        if is_mode(padding, "fixed"):
            raise ValueError(
                "An InstructionHead pads each batch to its longest example "
                '(padding="dynamic") or groups examples of similar length (padding="bucket" or '
                f'a list of bucket lengths); padding="fixed" is not supported. Received: '
                f"padding={padding!r}"
            )
        if self.head.packing and is_bucketed(padding):
            raise ValueError(
                "InstructionHead(packing=True) packs training examples into rows; length buckets "
                f"(padding={padding!r}) batch whole examples instead. Use one of them: drop "
                'padding=, or pass InstructionHead(packing=False) with padding="bucket".'
            )
        if isinstance(x, str) and x.startswith("tfds:"):
            raise ValueError("TFDS names are not supported by an InstructionHead; pass records.")

    def prepare(
        self, x, y=None, *, class_names=None, batch_size=32, shuffle=False, validation_split=0.0,
        sample_weight=None, seed=None, x_col=None, y_col=None, require_labels=True,
        padding="dynamic", training=False,
    ):
        """Checks, tokenises and batches SFT records.

        Returns:
            A `Prepared` whose `Batches` hold batched `tf.data.Dataset`s.
        """
        del class_names, x_col, y_col, require_labels
        padding = "dynamic" if padding is None else padding
        self._check(x, training, padding)
        examples = read_examples(x, y)
        tokenized = self.tokenize(examples)
        weights = kept_weights(check_sample_weight(sample_weight, len(examples)), tokenized)

        def make(index, train_split):
            if self.head.packing and train_split and training:
                return self.packed_batches(take(tokenized, index), take(weights, index),
                                           batch_size, shuffle=shuffle, seed=seed)
            ds = self.examples_dataset(take(tokenized, index), take(weights, index))
            return self.batch(ds, batch_size, len(index), shuffle=train_split and shuffle, seed=seed,
                              padding=padding if train_split else "dynamic")

        train, validation, index = build_splits(len(tokenized), make, validation_split, None, seed)
        return Prepared(train, validation, None, None, num_examples=len(index))
