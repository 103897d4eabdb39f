"""Exported detectors and segmenters serve what `predict_boxes` / `predict_masks` return.

`head.serving_outputs` decodes inside the exported graph: boxes after NMS in
the raw input's pixels, class-id masks at the raw input's size. The backbones
are tiny random-weight CNNs; the detector's head gets spread-out random
weights and keeps every detection (`confidence_threshold=0`), so that there
are distinct boxes and scores to compare.
"""

import numpy as np
import pytest

import finetunekit as fk


def stride8_cnn(size=32):
    """A tiny CNN with stride-4 and stride-8 stages (P2, P3), of stride-2 convolutions.

    (With a 3x3 stride-4 "same" convolution instead, TFLite's default XNNPACK
    delegate gave outputs far from TensorFlow's here, TFLite's own kernels not.)
    """
    import keras

    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="p1")(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="p2")(x)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="p3")(x)
    return keras.Model(inputs, x, name="stride8_cnn")


def tiny_detector(box_format="xywh", **options):
    head = fk.DetectionHead(
        2, bounding_box_format=box_format, fpn_filters=8, num_head_convs=1, min_level=3,
        max_level=4, num_scales=1, aspect_ratios=(1.0,), confidence_threshold=0.0,
        max_detections=6, **options,
    )
    ft = fk.FineTuner(stride8_cnn(), head=head, preprocessing="zero_one",
                      class_names=["cat", "dog"])
    rng = np.random.default_rng(3)  # spread the scores: untrained ones all sit at the 0.01 prior
    for weight in ft.head.weights:
        weight.assign(rng.normal(0.0, 0.3, weight.shape).astype("float32"))
    return ft


def check_same_detections(served, expected, atol):
    for index, found in enumerate(expected):
        count = int(served["num_detections"][index])
        assert count == len(found["boxes"]) > 0
        np.testing.assert_allclose(np.asarray(served["boxes"])[index, :count], found["boxes"], atol=atol)
        np.testing.assert_allclose(np.asarray(served["scores"])[index, :count], found["scores"], atol=atol)
        names = np.array(["cat", "dog"])[np.asarray(served["labels"])[index, :count]]
        np.testing.assert_array_equal(names, found["labels"])
        assert (np.asarray(served["boxes"])[index, count:] == -1).all()


def test_saved_model_and_tflite_serve_the_boxes_of_predict_boxes(tmp_path):
    import tensorflow as tf

    ft = tiny_detector()
    images = np.random.default_rng(0).integers(0, 255, (2, 40, 64, 3)).astype("uint8")
    served = tf.saved_model.load(ft.export(str(tmp_path / "served")))
    check_same_detections(served.serve(tf.constant(images, tf.float32)), ft.predict_boxes(images), 1e-3)
    raw = served.serve_outputs(tf.constant(images, tf.float32)).numpy()
    np.testing.assert_allclose(raw, ft.predict(images, verbose=0), atol=1e-5)
    assert (tmp_path / "served" / "labels.txt").read_text().split() == ["cat", "dog"]

    path = ft.export(str(tmp_path / "lite"), format="tflite")
    runner = tf.lite.Interpreter(model_path=path).get_signature_runner()
    small = images[:, :32, :32]
    check_same_detections(runner(images=small.astype("float32")), ft.predict_boxes(small), 1e-2)


def test_saved_model_serves_the_masks_of_predict_masks(tmp_path):
    import tensorflow as tf

    ft = fk.FineTuner(stride8_cnn(16), preprocessing="zero_one",
                      head=fk.SegmentationHead(3, filters=4))
    images = np.random.default_rng(1).integers(0, 255, (2, 24, 40, 3)).astype("uint8")
    served = tf.saved_model.load(ft.export(str(tmp_path / "served")))
    masks = served.serve(tf.constant(images, tf.float32))["masks"].numpy()
    assert masks.shape == (2, 24, 40) and masks.dtype == np.int32
    np.testing.assert_array_equal(masks, ft.predict_masks(images))


@pytest.mark.slow
def test_served_boxes_follow_the_box_format_and_a_reloaded_model(tmp_path):
    """A reloaded model (with the pyramid's GroupNorm layers) serves the same boxes."""
    import tensorflow as tf

    ft = tiny_detector("center_yxhw", normalize_pyramid=True)
    ft.save(str(tmp_path / "det.keras"))
    loaded = fk.load(str(tmp_path / "det.keras"))
    images = np.random.default_rng(2).integers(0, 255, (1, 48, 32, 3)).astype("uint8")
    served = tf.saved_model.load(loaded.export(str(tmp_path / "served")))
    check_same_detections(served.serve(tf.constant(images, tf.float32)), ft.predict_boxes(images), 1e-3)
