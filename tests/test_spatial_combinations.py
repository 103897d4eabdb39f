"""Spatial heads with the rest of FineTuner: checkpoint resume, layer decay, flat image folders,
TFLite under mixed precision."""

import os

import keras
import numpy as np
import pytest

import finetunekit as fk
from tests.test_spatial_serving import stride8_cnn


def boxes_data(n=4, size=32):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 80, (n, size, size, 3)).astype("uint8")
    boxes, labels = [], []
    for i in range(n):
        x1, y1 = rng.integers(0, size // 2, 2)
        images[i, y1:y1 + 12, x1:x1 + 12] = 220
        boxes.append([[x1, y1, x1 + 12, y1 + 12]])
        labels.append([i % 2])
    return images, {"boxes": boxes, "labels": labels}


def detector(**options):
    head = fk.DetectionHead(2, fpn_filters=8, num_head_convs=1, min_level=3, max_level=4,
                            num_scales=1, aspect_ratios=(1.0,))
    return fk.FineTuner(stride8_cnn(), head=head, preprocessing="zero_one", **options)


class Crash(keras.callbacks.Callback):
    """Records the weights when epoch `at` begins, then fails there (a crash mid-run)."""

    def __init__(self, at):
        super().__init__()
        self.at, self.weights = at, None

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.at:
            self.weights = self.model.get_weights()
            raise RuntimeError("crash")


class FirstEpoch(keras.callbacks.Callback):
    """Records the first epoch that begins and the weights then."""

    def on_epoch_begin(self, epoch, logs=None):
        if not hasattr(self, "epoch"):
            self.epoch, self.weights = epoch, self.model.get_weights()


def test_a_detector_with_layer_decay_resumes_from_its_checkpoint(tmp_path):
    from finetunekit.training.optimizer import LayerDecayAdamW

    x, y = boxes_data()
    ft = detector(unfreeze="all", layer_decay=0.5)
    ft.compile(learning_rate=1e-3)
    assert isinstance(ft.optimizer, LayerDecayAdamW)
    kernels = [ft.backbone.get_layer(name).kernel for name in ("p1", "p3")]
    assert ft.optimizer.multiplier(kernels[0]) == pytest.approx(0.5**3)
    assert ft.optimizer.multiplier(kernels[1]) == pytest.approx(0.5)
    assert all(ft.optimizer.multiplier(v) == 1.0 for v in ft.head.trainable_variables)
    crash, folder = Crash(at=1), str(tmp_path / "ckpt")
    with pytest.raises(RuntimeError, match="crash"):
        ft.fit(x, y, epochs=2, batch_size=4, checkpoint_dir=folder, callbacks=[crash], verbose=0)
    assert os.path.exists(os.path.join(folder, "backup"))

    resumed, first = detector(unfreeze="all", layer_decay=0.5), FirstEpoch()
    resumed.compile(learning_rate=1e-3)
    history = resumed.fit(x, y, epochs=2, batch_size=4, checkpoint_dir=folder, callbacks=[first],
                          verbose=0)
    assert first.epoch == 1 and len(history.history["loss"]) == 1
    for mine, saved in zip(first.weights, crash.weights, strict=True):
        np.testing.assert_array_equal(mine, saved)
    assert np.isfinite(history.history["loss"]).all()


def write_pngs(folder, images):
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    for index, image in enumerate(images):
        Image.fromarray(image).save(os.path.join(folder, f"{index}.png"))


def test_predict_boxes_and_masks_on_a_plain_folder_of_images(tmp_path):
    images = np.random.default_rng(0).integers(0, 255, (3, 24, 40, 3)).astype("uint8")
    write_pngs(tmp_path / "photos", images)
    det = detector()
    found = det.predict_boxes(str(tmp_path / "photos"))
    assert len(found) == 3
    for mine, expected in zip(found, det.predict_boxes(images), strict=True):
        np.testing.assert_allclose(mine["boxes"], expected["boxes"], atol=1e-3)
    seg = fk.FineTuner(stride8_cnn(16), head=fk.SegmentationHead(2, filters=4),
                       preprocessing="zero_one")
    masks = seg.predict_masks(str(tmp_path / "photos"))
    assert masks.shape == (3, 24, 40)
    np.testing.assert_array_equal(masks, seg.predict_masks(images))


def tflite_outputs(path, images):
    import tensorflow as tf

    runner = tf.lite.Interpreter(model_path=path).get_signature_runner()
    return runner(images=images.astype("float32"))


@pytest.mark.parametrize("policy", ["bfloat16", pytest.param("float16", marks=pytest.mark.slow)])
def test_tflite_export_under_mixed_precision(tmp_path, policy):
    images = np.random.default_rng(1).integers(0, 255, (2, 16, 16, 3)).astype("uint8")
    classifier = fk.FineTuner(stride8_cnn(16), head=fk.ClassificationHead(3),
                              preprocessing="zero_one", mixed_precision=policy)
    lite = tflite_outputs(classifier.export(str(tmp_path / "cls"), format="tflite"), images)
    [probabilities] = lite.values()
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities, classifier.predict(images, verbose=0), atol=2e-2)
    seg = fk.FineTuner(stride8_cnn(16), head=fk.SegmentationHead(2, filters=4),
                       preprocessing="zero_one", mixed_precision=policy)
    masks = tflite_outputs(seg.export(str(tmp_path / "seg"), format="tflite"), images)["masks"]
    assert masks.shape == (2, 16, 16)
    assert (masks == seg.predict_masks(images)).mean() > 0.9  # ties at low precision may flip
    # the models still compute in low precision after the export
    assert any(layer.compute_dtype == policy for layer in seg.backbone.layers)
