"""The image pipeline: arrays, `tf.data`, class folders, path lists, DataFrames and TFDS."""

import os

import numpy as np

from finetunekit.core.data.dataset_checks import check_image_dataset
from finetunekit.core.data.frames import column_values, is_dataframe
from finetunekit.core.data.images import (
    IMAGE_EXTENSIONS,
    as_image_array,
    check_images,
    dataframe_columns,
    decode_dataset,
    is_path,
    list_image_folder,
)
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
from finetunekit.core.data.tfds import as_tfds, load_tfds_split, tfds_image_batches


class ImagePipeline:
    """Prepares image data for one FineTuner.

    Arrays stay arrays (Keras batches them); files are read, decoded and
    resized in a parallel `tf.data` pipeline; datasets pass through.

    Args:
        head: the FineTuner's head (encodes and checks targets).
        input_shape: `(height, width, channels)` of the backbone.
    """

    def __init__(self, head, input_shape):
        self.head = head
        self.image_size = tuple(input_shape[:2])
        self.channels = 3  # files decode to RGB; the model converts if needed

    def _sources(self, x, y, x_col=None, y_col=None):
        """Returns `(source, inputs, labels, folder_class_names)`; source is "paths" or "array"."""
        if x is None or isinstance(x, dict):
            raise ValueError(
                "x must be images: an array of shape (n, height, width, channels), a folder "
                "with one sub-folder per class, a list of image paths, a DataFrame or a "
                f"tf.data.Dataset. Received: {'None' if x is None else 'a dict'}."
            )
        if is_dataframe(x):
            if isinstance(y, str):
                y_col, y = y, None
            x_col, y_col, paths = dataframe_columns(x, x_col, y_col)
            if y_col is not None and y is None:
                y = column_values(x, y_col, "label")
            return "paths", paths, y, None
        if is_path(x):
            return self._path_source(x, y)
        if isinstance(x, (list, tuple)) and x and all(is_path(p) for p in x):
            _check_path_strings(x)
            return "paths", [os.fspath(p) for p in x], y, None
        if isinstance(x, (list, tuple)) and not x:
            raise ValueError("No images: the input list is empty.")
        if hasattr(x, "to_numpy"):
            x = x.to_numpy()
        return "array", as_image_array(x), y, None

    def _path_source(self, x, y):
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

    def prepare(
        self, x, y=None, *, class_names=None, batch_size=32, shuffle=False, validation_split=0.0,
        sample_weight=None, on_bad_image="error", seed=None, x_col=None, y_col=None,
        require_labels=True, training=False,
    ):
        """Checks and converts image data.

        `training` is accepted for the pipeline contract; image augmentation
        runs inside the model (active in training only).

        Returns:
            A `Prepared`: arrays stay arrays, files become a batched dataset.
        """
        del training
        source = as_tfds(x)
        if source is not None:
            ds, names = load_tfds_split(source, y, validation_split)
            ds = tfds_image_batches(ds, self.image_size, batch_size, shuffle, seed)
            return Prepared(Batches(ds), class_names=class_names or names)
        if is_dataset(x):
            no_split_for_datasets(validation_split)
            check_image_dataset(x, self.head, class_names)
            return Prepared(Batches(x), class_names=class_names)
        kind, inputs, labels, folder_classes = self._sources(x, y, x_col, y_col)
        if folder_classes is not None and class_names is None:
            class_names = folder_classes
        check_lengths(len(inputs), labels, "inputs")
        weights = check_sample_weight(sample_weight, len(inputs))
        if labels is None and require_labels:
            raise ValueError("No labels: pass y=... (or a folder with class sub-folders).")
        if kind == "paths":
            inputs, labels, weights = _skip_bad_files(inputs, labels, weights, on_bad_image)
        targets = None
        if labels is not None:
            targets, class_names = self.head.encode_targets(labels, class_names)

        def make(index, training):
            part = (take(targets, index), take(weights, index))
            if kind == "array":
                return Batches(inputs[index], *part)
            ds = decode_dataset(
                take(inputs, index), *part, self.image_size, self.channels, batch_size,
                shuffle=shuffle and training, seed=seed,
            )
            return Batches(ds)

        train, validation, index = build_splits(
            len(inputs), make, validation_split, targets, seed
        )
        return Prepared(
            train, validation, class_names, take(targets, index), num_examples=len(index)
        )


def _skip_bad_files(paths, labels, weights, on_bad_image):
    keep = check_images(paths, on_bad_image)
    if keep.all():
        return paths, labels, weights
    index = np.flatnonzero(keep)
    if not len(index):
        raise ValueError("No readable images left after skipping bad files.")
    labels = None if labels is None else take(list(labels), index)
    return take(paths, index), labels, take(weights, index)


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
