"""The data pipeline contract shared by every modality.

A pipeline (`ImagePipeline`, `TextPipeline`, ...) turns what users pass to
`fit`/`evaluate`/`predict` into Keras' `(x, y, sample_weight)` contract:
readers (arrays, `tf.data`, folders, paths, DataFrames, files, TFDS) -> the
head's target encoding -> the backbone's preprocessing -> batching/padding.
It returns a `Prepared`: the training `Batches`, the validation `Batches` of a
`validation_split`, learned class names and the encoded training targets.
"""

import dataclasses

import numpy as np


def is_dataset(value):
    """True for a `tf.data.Dataset` (without importing TensorFlow for other values)."""
    import sys

    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(value, tf.data.Dataset)


def length(value):
    """Number of examples of an array, a list or a Series."""
    return value.shape[0] if hasattr(value, "shape") else len(value)


@dataclasses.dataclass
class Batches:
    """Model-ready data: arrays `(x, y, sample_weight)`, or a `tf.data.Dataset` of batches.

    Attributes:
        x: an array (Keras batches it) or a batched `tf.data.Dataset` of
            `x`, `(x, y)` or `(x, y, sample_weight)`.
        y: targets for an array `x`, else None.
        sample_weight: per-example weights for an array `x`, else None.
    """

    x: object
    y: object = None
    sample_weight: object = None

    @property
    def is_dataset(self):
        return is_dataset(self.x)

    def fit_arguments(self, batch_size=None):
        """Keyword arguments of `keras.Model.fit`/`evaluate` for this data."""
        if self.is_dataset:
            return {"x": self.x}
        return {
            "x": self.x, "y": self.y, "sample_weight": self.sample_weight, "batch_size": batch_size,
        }

    def as_validation(self):
        """This data as `fit(validation_data=...)`."""
        if self.is_dataset or self.y is None:
            return self.x
        if self.sample_weight is None:
            return (self.x, self.y)
        return (self.x, self.y, self.sample_weight)


@dataclasses.dataclass
class Prepared:
    """What a pipeline made of user data.

    Attributes:
        train: `Batches` to train (or evaluate, predict) on.
        validation: `Batches` held out by `validation_split`, or None.
        class_names: list of str or None. Class names learned from the data.
        train_targets: encoded targets of `train` (for `class_weight`), or None.
        num_examples: int or None. Examples in `train`, when known.
        context: what the head's `decode` needs to know of the inputs (e.g.
            where each word starts among sub-word tokens), or None.
    """

    train: Batches
    validation: Batches = None
    class_names: list = None
    train_targets: object = None
    num_examples: int = None
    context: object = None


def split_indices(n, validation_split, labels=None, seed=None):
    """Stratified (when possible) train/validation split of `range(n)` with scikit-learn."""
    from sklearn.model_selection import train_test_split

    if not 0.0 < validation_split < 1.0:
        raise ValueError(f"`validation_split` must be in (0, 1). Received: {validation_split}")
    indices = np.arange(n)
    stratify = None
    if labels is not None and np.asarray(labels).ndim == 1:
        _, counts = np.unique(np.asarray(labels), return_counts=True)
        n_val = int(np.ceil(n * validation_split))
        if counts.min() >= 2 and n_val >= len(counts) and n - n_val >= len(counts):
            stratify = labels
    train, val = train_test_split(
        indices, test_size=validation_split, random_state=seed, stratify=stratify
    )
    return np.sort(train), np.sort(val)


def build_splits(n, make, validation_split=0.0, stratify_by=None, seed=None):
    """Splits `range(n)` for `validation_split` and builds each part with `make`.

    Args:
        n: int. Number of examples.
        make: callable `(indices, training) -> Batches`.
        validation_split: float. Fraction held out (0: no split).
        stratify_by: encoded labels to stratify the split by, or None.
        seed: int or None.

    Returns:
        `(train, validation, train_indices)`; `validation` is None without a split.
    """
    if not validation_split:
        index = np.arange(n)
        return make(index, True), None, index
    train, val = split_indices(n, validation_split, stratify_by, seed)
    return make(train, True), make(val, False), train


def take(values, index):
    """`values[index]` for an array, or a list of the chosen items; None stays None."""
    if values is None:
        return None
    if isinstance(values, np.ndarray):
        return values[index]
    return [values[i] for i in index]


def check_sample_weight(sample_weight, n):
    """Validates per-example weights; returns a float32 vector or None."""
    if sample_weight is None:
        return None
    weights = np.asarray(
        sample_weight.to_numpy() if hasattr(sample_weight, "to_numpy") else sample_weight
    )
    if weights.dtype.kind not in "iufb" or weights.ndim != 1:
        raise ValueError(
            "`sample_weight` must be one number per example (shape (n,)). Received: "
            f"dtype {weights.dtype}, shape {weights.shape}."
        )
    if len(weights) != n:
        raise ValueError(
            f"`sample_weight` has {len(weights)} values but the data has {n} examples."
        )
    weights = weights.astype("float32")
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise ValueError("`sample_weight` must be finite and >= 0 (NaN, inf or negative found).")
    return weights


def check_lengths(n, labels, what="inputs"):
    """Raises when there is no data or `labels` do not match it in length."""
    if n == 0:
        raise ValueError(f"No {'images' if what == 'inputs' else what}: the data is empty.")
    if labels is not None and length(labels) != n:
        raise ValueError(
            f"x and y have different lengths: {n} {what} but {length(labels)} labels."
        )


def no_split_for_datasets(validation_split):
    if validation_split:
        raise ValueError(
            "validation_split is not supported for a tf.data.Dataset; pass "
            "validation_data=... instead."
        )


def check_class_names(class_names):
    """Checks `FineTuner(class_names=...)`: unique names; returns a list or None."""
    if class_names is None:
        return None
    names = [str(n) for n in class_names]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(
            f"`class_names` must be unique; {repeated} appear more than once. "
            f"Received: class_names={list(class_names)}"
        )
    return list(class_names)
