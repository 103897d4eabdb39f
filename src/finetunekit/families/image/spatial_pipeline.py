"""The image pipeline of spatial heads: masks and boxes resized and augmented with their images.

For a head with `target_layout == "spatial"` (segmentation, detection), every
image is resized to the backbone's input size together with its target in
`tf.data`, and augmentation runs there on `{"images", spatial_key}` with
Keras' image augmentation layers (which move masks and boxes with the
pixels) instead of inside the model. Predictions come back in each input's
own size through the `SpatialContext` handed to the head's `decode`.
"""

import os

import numpy as np

from finetunekit.core.data.images import decode_image
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
from finetunekit.core.data.spatial_targets import (
    BOXES,
    SpatialContext,
    as_model_targets,
    check_targets,
    clip_boxes,
    pack_targets,
    resize_example,
)
from finetunekit.families.image.pipeline import ImagePipeline, _skip_bad_files


class SpatialPipeline(ImagePipeline):
    """Prepares images with masks or boxes for a spatial head.

    Args:
        head: a `fk.heads.SpatialHead` (reads, checks and encodes targets).
        input_shape: `(height, width, channels)` of the backbone.
        augmentation: Keras image augmentation layers, run on images and
            targets together in training.
    """

    def __init__(self, head, input_shape, augmentation=()):
        super().__init__(head, input_shape)
        self.key = head.spatial_key
        self.augmentation = check_spatial_augmentation(augmentation)

    def prepare(
        self, x, y=None, *, class_names=None, batch_size=32, shuffle=False, validation_split=0.0,
        sample_weight=None, on_bad_image="error", seed=None, require_labels=True, training=False,
        **options,
    ):
        """Checks and converts images and their masks or boxes.

        `training=True` (what `fit` passes for its training data) runs the
        augmentation layers on the training split; evaluation, prediction and
        validation data are never augmented.

        Returns:
            A `Prepared` whose batches are `tf.data` datasets of
            `(images, targets[, sample_weight])` at the backbone's input size,
            and whose `context` is a `SpatialContext` of the inputs' sizes.
        """
        if is_dataset(x):
            no_split_for_datasets(validation_split)
            return Prepared(Batches(x), class_names=class_names)
        x, y = self.head.read_data(x, y)
        kind, inputs, labels, _ = self._sources(x, y, *self._columns(options))
        check_lengths(len(inputs), labels, "inputs")
        weights = check_sample_weight(sample_weight, len(inputs))
        if labels is None and require_labels:
            raise ValueError(f"No targets: pass y=... ({self.key.replace('_', ' ')}).")
        if kind == "paths":
            inputs, labels, weights = _skip_bad_files(inputs, labels, weights, on_bad_image)
        sizes = image_sizes(kind, inputs)
        packed = None
        if labels is not None:
            targets, class_names = self.head.encode_targets(labels, class_names)
            check_targets(self.key, targets, sizes)
            self.head.check_learnable(targets, sizes)
            packed = pack_targets(self.key, targets)
        context = _context(sizes, self.image_size)

        def make(index, train_split):
            part = None if packed is None else _take_packed(packed, index)
            ds = self._dataset(kind, take(inputs, index), part, take(weights, index),
                               batch_size, shuffle and train_split, training and train_split, seed)
            return Batches(ds)

        train, validation, index = build_splits(len(inputs), make, validation_split, None, seed)
        if validation_split:
            context = _context(take(sizes, index), self.image_size)
        return Prepared(train, validation, class_names, None, len(index), context)

    @staticmethod
    def _columns(options):
        return options.get("x_col"), options.get("y_col")

    def _dataset(self, kind, inputs, targets, weights, batch_size, shuffle, augment, seed):
        import tensorflow as tf

        parts = {"image": inputs}
        if targets is not None:
            parts["target"] = targets
        if weights is not None:
            parts["weight"] = weights
        ds = tf.data.Dataset.from_tensor_slices(parts)
        if shuffle:
            ds = ds.shuffle(_count(inputs), seed=seed, reshuffle_each_iteration=True)
        ds = ds.map(self._load(kind), num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size)
        if augment and self.augmentation and targets is not None:
            ds = ds.map(self._augment, num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.map(self._as_model_batch, num_parallel_calls=tf.data.AUTOTUNE)
        return ds.prefetch(tf.data.AUTOTUNE)

    def _load(self, kind):
        channels, key, size = self.channels, self.key, self.image_size

        def load(example):
            import tensorflow as tf

            image = example["image"]
            if kind == "paths":
                image = decode_image(tf.io.read_file(image), channels)
            example = dict(example)
            if "target" in example:
                example["image"], example["target"] = resize_example(
                    key, image, example["target"], size
                )
            else:
                example["image"] = tf.image.resize(tf.cast(image, "float32"), size)
            return example

        return load

    def _augment(self, batch):
        data = {"images": batch["image"], self.key: batch["target"]}
        for layer in self.augmentation:
            if getattr(layer, "pixel_only", False):
                data["images"] = layer(data["images"], training=True)
            else:
                data = layer(data, training=True)
        if self.key == BOXES:
            data[self.key] = clip_boxes(data[self.key], self.image_size)
        return dict(batch, image=data["images"], target=data[self.key])

    def _as_model_batch(self, batch):
        if "target" not in batch:
            return batch["image"]
        y = as_model_targets(self.key, batch["target"])
        if "weight" in batch:
            return batch["image"], y, batch["weight"]
        return batch["image"], y


def check_spatial_augmentation(layers):
    """Keeps augmentation layers that can move masks and boxes; raises for others."""
    import keras

    base = keras.layers.RandomFlip.__mro__[1]  # Keras' BaseImagePreprocessingLayer
    for layer in layers:
        if getattr(layer, "pixel_only", False):
            continue
        if not isinstance(layer, base):
            raise ValueError(
                f"The augmentation layer {layer.name!r} ({type(layer).__name__}) cannot move "
                "masks or boxes with the image. Masks and boxes need Keras' image augmentation "
                "layers (keras.layers.RandomFlip, RandomRotation, RandomZoom, ...) or the "
                "augment={...} keywords."
            )
        layer.bounding_box_format = "xyxy"
    return list(layers)


def image_sizes(kind, inputs):
    """Each image's `(height, width)`: from the array, or read from the file header."""
    if kind == "array":
        return [tuple(inputs.shape[1:3])] * len(inputs)
    from PIL import Image

    sizes = []
    for path in inputs:
        with Image.open(os.fspath(path)) as image:
            sizes.append((image.height, image.width))
    return sizes


def _context(sizes, model_size):
    return SpatialContext(sizes=list(sizes), model_size=tuple(model_size))


def _count(inputs):
    return inputs.shape[0] if hasattr(inputs, "shape") else len(inputs)


def _take_packed(packed, index):
    import tensorflow as tf

    index = np.asarray(index)
    return {
        name: tf.gather(value, index) if isinstance(value, tf.RaggedTensor) else value[index]
        for name, value in packed.items()
    }
