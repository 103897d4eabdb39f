"""The vector pipeline: `(n, features)` arrays or numeric DataFrames -> float32 batches."""

import numpy as np

from finetunekit.core.data.frames import is_dataframe
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


def as_vectors(x, num_features):
    """Checks and converts inputs to a float32 `(n, num_features)` array."""
    if is_dataframe(x):
        x = x.to_numpy()
    values = np.asarray(x)
    if values.dtype.kind not in "iufb":
        raise ValueError(
            f"A vector backbone takes numbers; x has dtype {values.dtype}. Encode strings as "
            "numbers first."
        )
    if values.ndim == 1 and len(values) == num_features:
        values = values[None, :]
    if values.ndim != 2 or values.shape[1] != num_features:
        raise ValueError(
            f"x must be vectors of shape (n, {num_features}) for this backbone. Received shape "
            f"{values.shape}."
        )
    values = values.astype("float32")
    if not np.all(np.isfinite(values)):
        raise ValueError("x contains NaN or inf values.")
    return values


class VectorPipeline:
    """Prepares vectors for a FineTuner with a vector backbone.

    Args:
        head: the FineTuner's head.
        num_features: int. Width of the backbone's input.
    """

    def __init__(self, head, num_features):
        self.head = head
        self.num_features = num_features

    def prepare(
        self, x, y=None, *, class_names=None, batch_size=32, shuffle=False, validation_split=0.0,
        sample_weight=None, seed=None, require_labels=True, training=False, **options,
    ):
        """Checks and converts vectors; returns a `Prepared` of arrays (datasets pass through)."""
        if options:
            raise ValueError(f"{', '.join(sorted(options))} do not apply to vector inputs.")
        if is_dataset(x):
            no_split_for_datasets(validation_split)
            return Prepared(Batches(x), class_names=class_names)
        if x is None:
            raise ValueError(f"x must be vectors of shape (n, {self.num_features}). Received: None.")
        inputs = as_vectors(x, self.num_features)
        check_lengths(len(inputs), y, "vectors")
        if y is None and require_labels:
            raise ValueError("No labels: pass y=... (one target per vector).")
        weights = check_sample_weight(sample_weight, len(inputs))
        targets = None
        if y is not None:
            targets, class_names = self.head.encode_targets(y, class_names)

        def make(index, training):
            return Batches(inputs[index], take(targets, index), take(weights, index))

        train, validation, index = build_splits(
            len(inputs), make, validation_split, targets, seed
        )
        return Prepared(train, validation, class_names, take(targets, index), num_examples=len(index))
