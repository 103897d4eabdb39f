"""The spatial seam: masks and boxes are resized and augmented with their images."""

import keras
import numpy as np
import pytest

import finetunekit as fk
from finetunekit.core.spatial import SpatialContext, SpatialHead
from finetunekit.families.image.augmentation import build_augmentation
from finetunekit.families.image.spatial_pipeline import SpatialPipeline


class _Targets(SpatialHead):
    """The smallest spatial head: targets pass through (the pipeline's own checks apply)."""

    def __init__(self, key, **kwargs):
        super().__init__(**kwargs)
        self.spatial_key = key

    def encode_targets(self, y, class_names=None):
        return list(y), class_names


class _PixelHead(SpatialHead):
    """A per-pixel classifier on the backbone's features, upsampled to the input size."""

    spatial_key = "segmentation_masks"

    def __init__(self, num_classes=2, size=16, **kwargs):
        super().__init__(**kwargs)
        self.num_classes, self.size = num_classes, size
        self.conv = keras.layers.Conv2D(num_classes, 1, dtype="float32")

    def call(self, outputs, training=None):
        logits = self.conv(outputs["features"])
        return keras.ops.image.resize(logits, (self.size, self.size))

    def compute_output_shape(self, input_shape):
        return (input_shape["features"][0], self.size, self.size, self.num_classes)

    def default_loss(self, label_smoothing=0.0):
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def encode_targets(self, y, class_names=None):
        return [np.asarray(m) for m in y], class_names

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "size": self.size}


def _scene(n=4, height=20, width=24, box=(2, 3, 9, 8)):
    """Images with one bright square (x1, y1, x2, y2) each, its mask and its box."""
    x1, y1, x2, y2 = box
    images = np.zeros((n, height, width, 3), "uint8")
    images[:, y1:y2, x1:x2] = 255
    masks = np.zeros((n, height, width), "int32")
    masks[:, y1:y2, x1:x2] = 1
    boxes = [{"boxes": [list(box)], "labels": [1]} for _ in range(n)]
    return images, masks, boxes


def _batches(pipeline, x, y, training=True, **options):
    prepared = pipeline.prepare(x, y, batch_size=4, shuffle=True, seed=0, training=training,
                                **options)
    return prepared, [tuple(np.asarray(t) for t in b) for b in prepared.train.x]


def test_masks_are_resized_with_their_images():
    images, masks, _ = _scene()
    pipeline = SpatialPipeline(_Targets("segmentation_masks"), (16, 16, 3))
    prepared, batches = _batches(pipeline, images, masks)
    x, y = batches[0]
    assert x.shape == (4, 16, 16, 3) and y.shape == (4, 16, 16) and y.dtype == np.int32
    # bilinear pixels and nearest-neighbour mask agree but for the object's edge
    assert ((x[..., 0] > 127) == (y == 1)).mean() > 0.98
    assert (y == 1).sum() > 0 and set(np.unique(y)) == {0, 1}
    assert prepared.context == SpatialContext(sizes=[(20, 24)] * 4, model_size=(16, 16))


@pytest.mark.parametrize("augment", [{"horizontal_flip": True, "vertical_flip": True},
                                     {"rotation_range": 40, "fill_mode": "constant"}])
def test_augmentation_moves_masks_with_the_object(augment):
    images, masks, _ = _scene()
    layers = build_augmentation({**augment, "seed": 3})
    pipeline = SpatialPipeline(_Targets("segmentation_masks"), (16, 16, 3), layers)
    _, batches = _batches(pipeline, images, masks)
    x, y = batches[0]
    bright = x[..., 0] > 127
    assert not np.array_equal(bright, np.asarray(images[:, :16, :16, 0] > 127))
    agreement = (bright == (y == 1)).mean()
    assert agreement > 0.97, agreement
    # evaluation and prediction data (training=False) are never augmented
    plain = SpatialPipeline(_Targets("segmentation_masks"), (16, 16, 3))
    _, (unchanged,) = _batches(pipeline, images, masks, training=False)
    _, (reference,) = _batches(plain, images, masks, training=False)
    for a, b in zip(unchanged, reference, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("augment", [{"horizontal_flip": True, "vertical_flip": True},
                                     {"rotation_range": 30, "fill_mode": "constant"}])
def test_augmentation_moves_boxes_with_the_object(augment):
    images, _, boxes = _scene()
    layers = build_augmentation({**augment, "seed": 5})
    pipeline = SpatialPipeline(_Targets("bounding_boxes"), (16, 16, 3), layers)
    _, batches = _batches(pipeline, images, boxes)
    x, y = batches[0]
    assert y.shape == (4, 1, 5)
    for image, (x1, y1, x2, y2, label) in zip(x, y[:, 0]):
        rows, cols = np.nonzero(image[..., 0] > 127)
        assert label == 1
        # the box still covers the object: its centre and nearly all its pixels
        assert x1 - 1 <= cols.mean() <= x2 + 1 and y1 - 1 <= rows.mean() <= y2 + 1
        inside = (cols >= x1 - 1) & (cols <= x2 + 1) & (rows >= y1 - 1) & (rows <= y2 + 1)
        assert inside.mean() > 0.9


def test_boxes_pushed_out_of_the_image_are_dropped_and_empty_images_are_valid():
    images, _, boxes = _scene(box=(0, 0, 3, 3))
    boxes[1] = {"boxes": np.zeros((0, 4)), "labels": []}
    shift = keras.layers.RandomTranslation((1.0, 1.0), (1.0, 1.0), seed=0)
    pipeline = SpatialPipeline(_Targets("bounding_boxes"), (16, 16, 3), [shift])
    _, batches = _batches(pipeline, images, boxes)
    _, y = batches[0]
    assert np.all(y[..., 4] == -1)  # moved out (down-right by a whole image) or never there
    assert np.all(y[..., :4] == -1)


def test_bad_spatial_targets_name_the_problem():
    images, masks, boxes = _scene()
    seg = SpatialPipeline(_Targets("segmentation_masks"), (16, 16, 3))
    with pytest.raises(ValueError, match=r"Mask 0 has size \(20, 20\).*\(20, 24\)"):
        seg.prepare(images, masks[:, :, :20])
    det = SpatialPipeline(_Targets("bounding_boxes"), (16, 16, 3))
    swapped = [{"boxes": [[9, 3, 2, 8]], "labels": [1]}] * 4
    with pytest.raises(ValueError, match="x2 < x1.*bounding_box_format"):
        det.prepare(images, swapped)
    outside = [{"boxes": [[2, 3, 40, 8]], "labels": [1]}] * 4
    with pytest.raises(ValueError, match="outside its 24x20"):
        det.prepare(images, outside)
    with pytest.raises(ValueError, match="cannot move masks or boxes"):
        SpatialPipeline(_Targets("bounding_boxes"), (16, 16, 3), [keras.layers.Dropout(0.1)])


def test_a_spatial_head_fits_with_augmentation_outside_the_model(tmp_path):
    from tests.conftest import tiny_cnn

    images, masks, _ = _scene(n=8)
    ft = fk.FineTuner(backbone=tiny_cnn((16, 16, 3)), head=_PixelHead(2, 16),
                      preprocessing="zero_one", augment={"horizontal_flip": True})
    assert not any(isinstance(layer, keras.layers.RandomFlip) for layer in ft.layers)
    ft.compile(learning_rate=0.05)
    history = ft.fit(images, masks, epochs=3, batch_size=4, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    outputs = ft.predict(images, verbose=0)
    assert outputs.shape == (8, 16, 16, 2)
    assert ft.get_config()["augment"]  # kept for the data pipeline after a reload
