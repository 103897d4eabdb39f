"""Turns what users pass to fit/evaluate/predict into Keras-ready data."""

import os

import numpy as np

from finetunekit.data.images import (
    IMAGE_EXTENSIONS,
    as_image_array,
    check_images,
    dataframe_columns,
    decode_dataset,
    is_dataframe,
    is_path,
    list_image_folder,
)
from finetunekit.data.tfds import as_tfds, load_tfds_split, tfds_image_batches


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


def balanced_class_weight(labels, head, mode="balanced"):
    """Class weights inversely proportional to class frequency, for `fit(class_weight=...)`.

    Uses `sklearn.utils.class_weight.compute_class_weight("balanced", ...)`:
    `n_samples / (n_classes_present * count(c))`. Classes of the head that do
    not occur in the labels get weight 1.0 (they never weigh a loss term).

    Args:
        labels: int class ids of the training examples (encoded targets).
        head: the FineTuner's head (a single-label `ClassificationHead`).
        mode: str. Only `"balanced"` is accepted.

    Returns:
        A dict `{class_id: weight}` for every class of the head.

    Example:
    ```python
    balanced_class_weight(np.array([0, 0, 0, 1]), fk.ClassificationHead(2))
    # {0: 0.667, 1: 2.0}
    ```
    """
    from sklearn.utils.class_weight import compute_class_weight

    if mode != "balanced":
        raise ValueError(
            '`class_weight` must be a dict {class_id: weight} or "balanced". '
            f"Received: class_weight={mode!r}"
        )
    num_classes = getattr(head, "num_classes", None)
    if num_classes is None or getattr(head, "multi_label", False):
        raise ValueError(
            'class_weight="balanced" needs a single-label ClassificationHead; this head is '
            f"{type(head).__name__}"
            + (" with multi_label=True" if getattr(head, "multi_label", False) else "")
            + ". Pass sample_weight=... instead."
        )
    if labels is None:
        raise ValueError(
            'class_weight="balanced" needs the training labels up front (arrays, paths, a '
            "folder or a DataFrame); with a tf.data.Dataset pass a dict "
            "{class_id: weight} computed from your labels."
        )
    labels = np.asarray(labels).reshape(-1).astype("int64")
    present = np.unique(labels)
    weights = compute_class_weight("balanced", classes=present, y=labels)
    result = {i: 1.0 for i in range(num_classes)}
    result.update({int(c): float(w) for c, w in zip(present, weights, strict=True)})
    return result


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
        if x is None or isinstance(x, dict):
            raise ValueError(
                "x must be images: an array of shape (n, height, width, channels), a folder "
                "with one sub-folder per class, a list of image paths, a DataFrame or a "
                f"tf.data.Dataset. Received: {'None' if x is None else 'a dict'}."
            )
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
                if len(class_names) < 2 and getattr(self.head, "num_classes", None):
                    raise ValueError(
                        f"Only one class folder ({class_names[0]!r}) in {os.fspath(x)!r}: a "
                        "classifier learns from at least two classes. Add a sub-folder with "
                        "images of each other class."
                    )
                return "paths", paths, labels, class_names
            if os.path.isfile(x):
                return "paths", [os.fspath(x)], y, None
            raise FileNotFoundError(f"No such image file or folder: {os.fspath(x)!r}")
        if isinstance(x, (list, tuple)) and x and all(is_path(p) for p in x):
            _check_path_strings(x)
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
        source = as_tfds(x)
        if source is not None:
            ds, names = load_tfds_split(source, y, validation_split)
            ds = tfds_image_batches(ds, self.image_size, batch_size, shuffle, seed)
            return (ds, None), None, class_names or names
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
                inputs = [p for p, k in zip(inputs, keep, strict=True) if k]
                if labels is not None:
                    labels = [v for v, k in zip(list(labels), keep, strict=True) if k]
                if not inputs:
                    raise ValueError("No readable images left after skipping bad files.")
                n = len(inputs)
        targets = None
        if labels is not None:
            _check_not_one_class(self.head, labels, class_names)
            targets, class_names = self.head.prepare_targets(labels, class_names)
        splits = [np.arange(n)]
        if validation_split:
            splits = list(split_indices(n, validation_split, targets, seed))
        # Encoded training labels, also for file pipelines (class_weight="balanced").
        self.train_targets = None if targets is None else targets[splits[0]]
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


def _check_path_strings(items):
    """A list of strings none of which is a file or looks like an image path is not image data."""
    if any(os.path.exists(p) for p in items):
        return
    names = [os.fspath(p) for p in items]
    if any(n.lower().endswith(IMAGE_EXTENSIONS) or os.sep in n or "/" in n for n in names):
        return  # image paths that are missing: reported per file by check_images
    preview = ", ".join(repr(n) for n in names[:3]) + (", ..." if len(names) > 3 else "")
    raise ValueError(
        "This is an image model: x must be images (an array, a folder, or image file paths), "
        f"but it received strings that are not files: [{preview}]. Labels go in y; "
        "predict_labels(images) returns label names."
    )


def _check_not_one_class(head, labels, class_names):
    """String labels of a single class cannot train a single-label classifier."""
    if class_names is not None or getattr(head, "num_classes", None) is None:
        return
    if getattr(head, "multi_label", False):
        return
    values = np.asarray(labels.to_numpy() if hasattr(labels, "to_numpy") else labels)
    if values.ndim != 1 or values.dtype.kind not in "USO" or not values.size:
        return
    distinct = {str(v) for v in values.tolist()}
    if len(distinct) == 1:
        raise ValueError(
            f"All labels are {next(iter(distinct))!r}: a classifier learns from at least two "
            "classes. Add examples of the other classes, or pass class_names=[...] with all "
            "class names to FineTuner."
        )
