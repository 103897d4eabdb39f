"""Checks of a user's `tf.data.Dataset` before training: what arrays get, for datasets.

A dataset is read lazily, so nothing is checked unless asked: a wrong rank, a
string label or a label out of range would otherwise end in a "Graph
execution error" mid-epoch. These checks read the `element_spec` and the
first element only, and let the head judge the first batch's labels with its
own `encode_targets` (and its own message).
"""

import numpy as np


def dataset_parts(ds):
    """The `element_spec` of a dataset as a tuple `(x_spec, [y_spec, [weights_spec]])`."""
    spec = ds.element_spec
    return spec if isinstance(spec, tuple) else (spec,)


def first_element(ds):
    """The first element of a dataset as numpy values, or None when it is empty."""
    for element in ds.take(1).as_numpy_iterator():
        return element
    return None


def check_image_dataset(ds, head, class_names=None):
    """Checks a dataset of `images` or `(images, labels[, sample_weights])` for an image model.

    Args:
        ds: a `tf.data.Dataset`.
        head: the FineTuner's head; it judges the first batch's labels.
        class_names: list of str or None. The FineTuner's class names.

    Raises:
        ValueError: unbatched or wrongly shaped images, images given as
            strings, string labels, or labels the head refuses (its own
            message, prefixed with where they were found).
    """
    import tensorflow as tf

    parts = dataset_parts(ds)
    images = parts[0]
    if not isinstance(images, tf.TensorSpec):
        return
    if images.dtype == tf.string:
        raise ValueError(
            f"The tf.data.Dataset yields strings as images ({images}); an image model needs "
            "decoded pixels. Pass the list of file paths (and labels) to fit instead, which "
            "decodes and resizes them, or decode them in the dataset with "
            "tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)."
        )
    _check_image_rank(images)
    if len(parts) > 1:
        check_dataset_labels(ds, head, class_names, batched=True)


def _check_image_rank(images):
    rank = images.shape.rank
    if rank is None or rank == 4:
        return
    shape = tuple(images.shape)
    if rank == 3 and shape[-1] in (1, 3, 4, None):
        raise ValueError(
            f"The tf.data.Dataset yields single images of shape {shape}, not batches; Keras "
            "trains on batches of shape (batch, height, width, channels). Batch it first: "
            "ds.batch(32)."
        )
    if rank == 3:
        raise ValueError(
            f"The tf.data.Dataset yields images of shape {shape}. For batches of grayscale "
            "images add a channel axis: ds.map(lambda x, y: (x[..., None], y)); for single "
            "images, batch them: ds.batch(32)."
        )
    raise ValueError(
        f"The tf.data.Dataset yields images of shape {shape} (rank {rank}); an image model "
        "takes batches of shape (batch, height, width, channels)."
    )


def check_dataset_labels(ds, head, class_names=None, batched=True):
    """Checks the labels of a dataset of `(x, labels[, sample_weights])` against the head.

    Args:
        ds: a `tf.data.Dataset`.
        head: the FineTuner's head. Only heads with one target per example
            (`target_layout == "example"`) are checked.
        class_names: list of str or None.
        batched: bool. Whether elements are batches (else single examples).

    Raises:
        ValueError: string labels (the fix: map them to class ids), or the
            head's own error for the first element's labels.
    """
    import tensorflow as tf

    parts = dataset_parts(ds)
    if len(parts) < 2 or not isinstance(parts[1], tf.TensorSpec):
        return
    if parts[1].dtype == tf.string:
        raise ValueError(
            f"The tf.data.Dataset yields string labels ({parts[1]}); Keras trains on class ids. "
            "Map them to ids in the dataset, e.g. lookup = keras.layers.StringLookup("
            "vocabulary=class_names, num_oov_indices=0); ds = ds.map(lambda x, y: (x, "
            "lookup(y))), and pass class_names=... to FineTuner; or pass the data as arrays or "
            "lists, which take string labels."
        )
    if getattr(head, "target_layout", "example") != "example":
        return
    element = first_element(ds)
    if element is None:
        raise ValueError("The tf.data.Dataset is empty: it yields no elements.")
    labels = np.asarray(element[1])
    if not batched or labels.ndim == 0:
        labels = labels[None]
    try:
        head.encode_targets(labels, class_names)
    except ValueError as error:
        raise ValueError(f"In the first batch of the tf.data.Dataset: {error}") from error
