"""Turns what users pass to fit/evaluate/predict into Keras-ready data."""

import os

import numpy as np

from finetunekit.data.images import (
    as_image_array,
    check_images,
    dataframe_columns,
    decode_dataset,
    is_dataframe,
    is_path,
    list_image_folder,
)


def is_dataset(value):
    try:
        import tensorflow as tf
    except ImportError:  # pragma: no cover
        return False
    return isinstance(value, tf.data.Dataset)


def _length(value):
    return value.shape[0] if hasattr(value, "shape") else len(value)


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


class ImageDataAdapter:
    """Prepares image data for one FineTuner.

    Args:
        head: the FineTuner's head (encodes and checks targets).
        input_shape: `(height, width, channels)` of the backbone.
    """

    def __init__(self, head, input_shape):
        self.head = head
        self.image_size = tuple(input_shape[:2])
        self.channels = 3  # files decode to RGB; the model converts if needed

    def _sources(self, x, y, x_col=None, y_col=None):
        """Returns `(kind, inputs, labels, folder_class_names)`."""
        if is_dataframe(x):
            if isinstance(y, str):
                y_col, y = y, None
            x_col, y_col = dataframe_columns(x, x_col, y_col)
            labels = x[y_col].tolist() if y_col is not None and y is None else y
            return "paths", [os.fspath(p) for p in x[x_col].tolist()], labels, None
        if is_path(x):
            if os.path.isdir(x):
                if y is not None:
                    raise ValueError(
                        "Labels come from the class sub-folders of a folder; do not pass y "
                        "with a folder."
                    )
                paths, labels, class_names = list_image_folder(x)
                return "paths", paths, labels, class_names
            if os.path.isfile(x):
                return "paths", [os.fspath(x)], y, None
            raise FileNotFoundError(f"No such image file or folder: {os.fspath(x)!r}")
        if isinstance(x, (list, tuple)) and x and all(is_path(p) for p in x):
            return "paths", [os.fspath(p) for p in x], y, None
        if isinstance(x, (list, tuple)) and not x:
            raise ValueError("No images: the input list is empty.")
        if hasattr(x, "to_numpy"):
            x = x.to_numpy()
        return "array", as_image_array(x), y, None

    def prepare(
        self,
        x,
        y=None,
        *,
        class_names=None,
        batch_size=32,
        shuffle=False,
        validation_split=0.0,
        on_bad_image="error",
        seed=None,
        x_col=None,
        y_col=None,
        require_labels=True,
    ):
        """Checks and converts data.

        Returns:
            `(train, validation, class_names)`: each of `train` and
            `validation` is `(inputs, targets)` where inputs is an array or a
            `tf.data.Dataset` (then targets is None); validation is None
            unless `validation_split` is set.
        """
        if is_dataset(x):
            if validation_split:
                raise ValueError(
                    "validation_split is not supported for a tf.data.Dataset; pass "
                    "validation_data=... instead."
                )
            return (x, None), None, class_names
        kind, inputs, labels, folder_classes = self._sources(x, y, x_col, y_col)
        if folder_classes is not None and class_names is None:
            class_names = folder_classes
        n = _length(inputs)
        if n == 0:
            raise ValueError("No images: the data is empty.")
        if labels is not None and _length(labels) != n:
            raise ValueError(
                f"x and y have different lengths: {n} inputs but {_length(labels)} labels."
            )
        if labels is None and require_labels:
            raise ValueError("No labels: pass y=... (or a folder with class sub-folders).")
        if kind == "paths":
            keep = check_images(inputs, on_bad_image)
            if not keep.all():
                inputs = [p for p, k in zip(inputs, keep) if k]
                if labels is not None:
                    labels = [v for v, k in zip(list(labels), keep) if k]
                if not inputs:
                    raise ValueError("No readable images left after skipping bad files.")
                n = len(inputs)
        targets = None
        if labels is not None:
            targets, class_names = self.head.prepare_targets(labels, class_names)
        splits = [np.arange(n)]
        if validation_split:
            splits = list(split_indices(n, validation_split, targets, seed))
        out = []
        for i, index in enumerate(splits):
            part_y = None if targets is None else targets[index]
            if kind == "array":
                out.append((inputs[index], part_y))
            else:
                part_x = [inputs[j] for j in index]
                ds = decode_dataset(
                    part_x,
                    part_y,
                    self.image_size,
                    self.channels,
                    batch_size,
                    shuffle=shuffle and i == 0,
                    seed=seed,
                )
                out.append((ds, None))
        return out[0], (out[1] if len(out) > 1 else None), class_names
