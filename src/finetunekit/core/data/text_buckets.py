"""Length buckets for text batches: the `padding` modes and sortish batches of a few fixed widths.

`padding="bucket"` (or a list of bucket lengths) groups training texts of
similar token length, as fastai's sortish sampling, and pads each batch to the
smallest of a few fixed widths that holds its longest text, so that padded work
shrinks while a compiled training step sees few shapes.
"""

PADDINGS = ("dynamic", "bucket", "fixed")


def sortish_batches(pipeline, ds, batch_size, shapes, values, buckets, chunk_batches=50):
    """Batches of similar lengths, as fastai's sortish sampling, padded to bucket lengths.

    Args:
        pipeline: the `TextPipeline` (its `lengths` counts tokens).
        ds: unbatched dataset of token dicts (and targets, weights).
        batch_size: int.
        shapes, values: `padded_batch` shapes and padding values.
        buckets: sorted list of widths, the last one `sequence_length`.
        chunk_batches: int. Batches per sorted chunk.

    Returns:
        A dataset of batches.

    The (shuffled) stream is cut into chunks of `chunk_batches` batches
    (50, or fewer so that an epoch has at least 4 chunks, as Hugging Face's
    length-grouped sampler: sorting all of a small set made the batches so
    alike that accuracy dropped);
    each chunk is sorted by length (ties in stream order), split into
    batches, and each batch is padded (or cut) to the smallest of
    `buckets` that holds its longest sequence; the batches are then
    shuffled. Every example is seen once per epoch, with its own targets,
    and the number of batches is `ceil(n / batch_size)`, as without
    bucketing. A few fixed widths keep the shapes a compiled step sees few.
    """
    return sortish(ds, batch_size, shapes, values, lambda e: pipeline.lengths(e[0]),
                   bucket_padder(pipeline, buckets, values), chunk_batches)


def bucket_padder(pipeline, buckets, values, per_token=False):
    """`fn(*batch) -> batch` padding a batch's tokens to the smallest bucket width that holds it.

    Args:
        pipeline: the `TextPipeline` (its `lengths` counts tokens).
        buckets: sorted list of widths, the last one `sequence_length`.
        values: `padded_batch` padding values (a dict, or a tuple whose first
            item is the features' dict and whose second is the targets').
        per_token: bool. The targets have one value per token: pad them too.

    Returns:
        A function for `Dataset.map`.
    """
    import tensorflow as tf

    buckets = tf.constant(buckets, dtype="int32")
    pads = values[0] if isinstance(values, tuple) else values

    def to_bucket(features, *rest):
        width = bucket_width(buckets, tf.reduce_max(pipeline.lengths(features)))
        features = {
            name: pad_to(value, width, pads[name]) for name, value in features.items()
        }
        if per_token and rest:
            rest = (pad_to(rest[0], width, values[1]), *rest[1:])
        return (features, *rest) if rest else features

    return to_bucket


def sortish(ds, batch_size, shapes, values, length_of, to_bucket, chunk_batches=50):
    """The sortish core: chunks of `chunk_batches` batches sorted by `length_of`, batches shuffled.

    Args:
        ds: unbatched dataset.
        batch_size: int.
        shapes, values: `padded_batch` shapes and padding values of a chunk.
        length_of: `fn(chunk_element) -> (chunk,) int lengths` to sort by.
        to_bucket: `fn(*batch_element) -> batch_element` padding a batch to its widths.
        chunk_batches: int. Batches per sorted chunk.

    Returns:
        A dataset of batches (see `sortish_batches`).
    """
    import tensorflow as tf

    def sort_and_split(*element):
        order = tf.argsort(length_of(element), stable=True)
        element = tf.nest.map_structure(lambda value: tf.gather(value, order), element)
        return tf.data.Dataset.from_tensor_slices(element).batch(batch_size).map(to_bucket)

    return (
        ds.padded_batch(batch_size * chunk_batches, padded_shapes=shapes, padding_values=values)
        .flat_map(sort_and_split)
        .shuffle(chunk_batches, reshuffle_each_iteration=True)
    )


def batch_examples(ds, n, batch_size, batch, shuffle=False, seed=None):
    """Caches, shuffles and batches a dataset of `n` examples into `ceil(n / batch_size)` batches.

    The one epoch loop of the text, sequence-to-sequence and causal-LM
    pipelines: examples are cached once (tokenised), reshuffled every epoch
    when `shuffle`, then grouped by `batch`.

    Args:
        ds: an unbatched `tf.data.Dataset` of `n` examples.
        n: int. The number of examples.
        batch_size: int.
        batch: callable `dataset -> batched dataset` (padded batches, or
            `sortish` length buckets).
        shuffle: bool. Reshuffle every epoch. Defaults to `False`.
        seed: int or None.

    Returns:
        A prefetched `tf.data.Dataset` of known cardinality.
    """
    import tensorflow as tf

    ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    ds = batch(ds).apply(tf.data.experimental.assert_cardinality(-(-n // batch_size)))
    return ds.prefetch(tf.data.AUTOTUNE)


def padded_batches(ds, n, batch_size, shapes, values, bucketed, padding="dynamic",
                   shuffle=False, seed=None):
    """`batch_examples` of rows padded to their batch's longest, or length buckets when shuffling.

    The batching of the sequence-to-sequence and causal-LM pipelines.

    Args:
        ds: an unbatched `tf.data.Dataset` of `n` `(x, y, weight)` rows.
        n: int. The number of examples.
        batch_size: int.
        shapes: `padded_shapes` of `padded_batch`.
        values: `padding_values` of `padded_batch`.
        bucketed: callable `(examples, batch_size, n, shapes, values, padding)
            -> batched dataset`, the pipeline's length buckets.
        padding: `"dynamic"`, `"bucket"` or a list of bucket lengths.
        shuffle: bool. Reshuffle every epoch (buckets apply only then).
        seed: int or None.

    Returns:
        A prefetched `tf.data.Dataset` of known cardinality.
    """

    def batch(examples):
        if shuffle and is_bucketed(padding):
            return bucketed(examples, batch_size, n, shapes, values, padding)
        return examples.padded_batch(batch_size, padded_shapes=shapes, padding_values=values)

    return batch_examples(ds, n, batch_size, batch, shuffle, seed)


def bucket_width(buckets, longest):
    """The smallest of `buckets` (an int32 tensor, sorted) that holds `longest` (the last if none)."""
    import tensorflow as tf

    return tf.gather(buckets, tf.searchsorted(buckets[:-1], [longest]))[0]


def chunk_batches(examples, batch_size):
    """Batches per sorted chunk: 50, or fewer so that an epoch has at least 4 chunks."""
    if not examples or examples < 0:
        return 50
    return min(50, max(1, examples // (4 * batch_size)))


def is_mode(padding, mode):
    return isinstance(padding, str) and padding == mode


def is_bucketed(padding):
    """`"bucket"` or a list of bucket lengths: sortish batches padded to a few widths."""
    return is_mode(padding, "bucket") or not isinstance(padding, str)


def bucket_lengths(padding, sequence_length):
    """The padded widths of `padding="bucket"` (or the given lengths), capped at `sequence_length`.

    The default ladder steps by 8 up to 64, then by a quarter of the last
    power of two (80, 96, 112, 128, 160, ...): a batch is padded by at most
    a quarter of its longest text beyond 32 tokens.
    """
    if is_mode(padding, "bucket"):
        ladder, step, length = [], 8, 8
        while length < sequence_length:
            ladder.append(length)
            step = max(8, 2 ** (length.bit_length() - 1) // 4)
            length += step
        padding = ladder
    lengths = sorted({int(b) for b in padding if int(b) < sequence_length})
    return lengths + [int(sequence_length)]


def pad_to(value, width, pad_value):
    """Cuts or pads (with `pad_value`) the second axis of a batch to `width`."""
    import tensorflow as tf

    value = value[:, :width]
    extra = width - tf.shape(value)[1]
    return tf.pad(value, [[0, 0], [0, extra]], constant_values=pad_value)


def check_padding(padding):
    if isinstance(padding, str) and padding in PADDINGS:
        return
    if not isinstance(padding, str):
        try:
            lengths = [int(b) for b in padding]
            if lengths and all(b == int(b) >= 1 for b in lengths) and all(
                not isinstance(b, bool) for b in padding
            ):
                return
        except (TypeError, ValueError):
            pass
    raise ValueError(
        f"Unknown padding {padding!r}. Expected one of {', '.join(map(repr, PADDINGS))}, or a "
        f"list of bucket lengths such as [16, 32, 64, 128]. Received: padding={padding!r}"
    )
