"""SegmentationHead: learning masks, mask folders, sizes, reports, loss, precision, export."""

import os

import keras
import numpy as np
import pytest

import finetunekit as fk
from finetunekit.families.segmentation.scores import scores_from_confusion, segmentation_section
from tests.conftest import tiny_cnn


def squares(n=16, size=16, seed=0):
    """Images with one bright square each (random place and size) and its mask (class 1)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 60, (n, size, size, 3)).astype("uint8")
    masks = np.zeros((n, size, size), "int32")
    for i in range(n):
        side = rng.integers(size // 4, size // 2)
        top, left = rng.integers(0, size - side, 2)
        images[i, top:top + side, left:left + side] = 230
        masks[i, top:top + side, left:left + side] = 1
    return images, masks


def pyramid_cnn(size=16):
    """A tiny CNN with stride-4 and stride-8 stages (a P2 and a P3 level)."""
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="stem")(inputs)
    x = keras.layers.Conv2D(8, 3, strides=4, padding="same", activation="relu", name="p2")(x)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="p3")(x)
    return keras.Model(inputs, x, name="pyramid_cnn")


def iou(a, b):
    return np.logical_and(a, b).sum() / max(np.logical_or(a, b).sum(), 1)


@pytest.mark.parametrize(
    "decoder", ["unet", pytest.param("fpn", marks=pytest.mark.slow)]  # fpn also fits in the export test
)
def test_learns_masks_and_predicts_them_at_each_inputs_size(decoder):
    images, masks = squares(24)
    ft = fk.FineTuner(pyramid_cnn(), head=fk.SegmentationHead(2, decoder=decoder, filters=8),
                      preprocessing="zero_one", unfreeze="all")
    assert ft.head.levels == ["P2"]  # P3 is the feature map itself
    ft.compile(learning_rate=0.01)
    history = ft.fit(images, masks, epochs=25, batch_size=8, verbose=0)
    assert history.history["mean_iou"][-1] > 0.7, history.history["mean_iou"][-1]
    big = np.repeat(np.repeat(images[:4], 2, axis=1), 3, axis=2)  # 32 x 48 inputs
    predicted = ft.predict_masks(big)
    assert predicted.shape == (4, 32, 48) and predicted.dtype == np.int32
    expected = np.repeat(np.repeat(masks[:4], 2, axis=1), 3, axis=2)
    assert iou(predicted == 1, expected == 1) > 0.6


def write_pairs(root, sizes, seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    os.makedirs(root / "images")
    os.makedirs(root / "masks")
    for i, (height, width) in enumerate(sizes):
        image = rng.integers(0, 255, (height, width, 3)).astype("uint8")
        mask = rng.integers(0, 3, (height, width)).astype("uint8")
        Image.fromarray(image).save(root / "images" / f"img_{i}.{'png' if i % 2 else 'jpg'}")
        Image.fromarray(mask, mode="L").save(root / "masks" / f"img_{i}.png")
    return str(root / "images"), str(root / "masks")


def test_folders_of_images_and_png_masks_of_different_sizes(tmp_path):
    images, masks = write_pairs(tmp_path, [(20, 24), (16, 16), (30, 12), (18, 22)])
    ft = fk.FineTuner(tiny_cnn((16, 16, 3)), head=fk.SegmentationHead(3, filters=4),
                      preprocessing="zero_one", class_names=["sky", "road", "car"])
    ft.fit(images, masks, epochs=1, batch_size=2, verbose=0)
    predicted = ft.predict_masks(images)
    assert [m.shape for m in predicted] == [(20, 24), (16, 16), (30, 12), (18, 22)]
    report = ft.evaluate(images, masks, report=True)
    assert report.task == "segmentation" and list(report.per_class) == ["sky", "road", "car"]
    assert report.num_examples == 4 and report.confusion_matrix.sum() == 4 * 16 * 16
    assert "iou" in str(report) and 0 <= report["mean_iou"] <= 1


def test_report_scores_come_from_the_confusion_matrix():
    targets = np.array([[[0, 0, 1, 1], [0, 2, 2, 1]]])
    predicted = np.array([[[0, 1, 1, 1], [0, 2, 0, 1]]])
    outputs = np.eye(3)[predicted]  # one-hot "logits"
    report = segmentation_section(outputs, targets, ["a", "b", "c"])
    # class 0: tp 2, fp 1, fn 1 -> IoU 2/4; class 1: tp 3, fp 1 -> 3/4; class 2: tp 1, fn 1 -> 1/2
    np.testing.assert_allclose([report.per_class[c]["iou"] for c in "abc"], [0.5, 0.75, 0.5])
    np.testing.assert_allclose(report.per_class["b"]["dice"], 6 / 7)
    assert report["pixel_accuracy"] == 6 / 8
    np.testing.assert_allclose(report["mean_iou"], np.mean([0.5, 0.75, 0.5]))
    absent = scores_from_confusion(np.diag([3, 0]))
    assert absent["iou"].tolist() == [1.0, 0.0] and absent["union"][1] == 0


def test_dice_loss_rewards_overlap_and_round_trips():
    loss = fk.heads.SegmentationLoss(dice_weight=1.0, label_smoothing=0.1)
    clone = fk.heads.SegmentationLoss.from_config(loss.get_config())
    assert clone.get_config() == loss.get_config()
    masks = np.array([[[0, 1], [1, 1]]])
    right = 20.0 * (np.eye(2)[masks] - 0.5)
    wrong = 20.0 * (np.eye(2)[1 - masks] - 0.5)
    dice = fk.heads.SegmentationLoss(dice_weight=1.0)
    assert float(dice(masks, right)) < 0.1 and float(dice(masks, wrong)) > 20.0
    cross = fk.heads.SegmentationLoss()
    # the Dice term: 1 - mean over classes of (2 * overlap + 1) / (sizes + 1), ~1 when all wrong
    np.testing.assert_allclose(float(dice(masks, wrong)) - float(cross(masks, wrong)), 1 - (1 / 5 + 1 / 5) / 2, atol=1e-3)
    np.testing.assert_allclose(float(loss(masks, right)), 0.05 * 20, atol=1e-3)  # smoothing
    with pytest.raises(ValueError, match="dice_weight"):
        fk.SegmentationHead(2, dice_weight=-1)


def test_mixed_precision_fine_tune_checkpoints_and_export(tmp_path):
    import tensorflow as tf

    images, masks = squares(8, size=16)
    ft = fk.FineTuner(pyramid_cnn(), preprocessing="zero_one", layer_decay=0.8,
                      head=fk.SegmentationHead(2, decoder="fpn", filters=8, dice_weight=0.5),
                      mixed_precision="bfloat16", augment={"horizontal_flip": True})
    history = ft.fine_tune(images, masks, epochs=2, freeze_epochs=1, unfreeze=1, batch_size=4,
                           checkpoint_dir=str(tmp_path / "ckpt"), verbose=0)
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["loss"]).all()
    outputs = ft.predict(images, verbose=0)
    assert outputs.dtype == np.float32 and outputs.shape == (8, 16, 16, 2)
    assert os.path.exists(tmp_path / "ckpt")
    path = ft.export(str(tmp_path / "served"))
    served = tf.saved_model.load(path)
    raw = tf.constant(np.repeat(images[:2], 2, axis=1), tf.float32)  # 64 x 32, any size
    logits = served.serve_outputs(raw).numpy()
    assert logits.shape == (2, 16, 16, 2)
    np.testing.assert_allclose(logits, ft.predict(raw.numpy(), verbose=0), atol=0.1)
    masks = served.serve(raw)["masks"].numpy()  # class ids at the raw images' size
    assert masks.shape == (2, 32, 16)
    assert (masks == ft.predict_masks(raw.numpy().astype("uint8"))).mean() > 0.99  # bfloat16


def test_plot_masks_writes_a_picture(tmp_path):
    images, masks = squares(1, size=16)
    path = fk.plot_masks(images[0], masks[0], str(tmp_path / "masks.png"),
                         prediction=1 - masks[0], class_names=["bg", "square"])
    assert os.path.getsize(path) > 1000
    assert not [n for n in os.listdir(tmp_path) if n != "masks.png"]  # written atomically


def test_tflite_export_gives_class_id_masks(tmp_path):
    import tensorflow as tf

    from tests.test_spatial_serving import stride8_cnn  # (see there why not pyramid_cnn)

    ft = fk.FineTuner(stride8_cnn(16), preprocessing="zero_one",
                      head=fk.SegmentationHead(2, filters=4))
    path = ft.export(str(tmp_path / "lite"), format="tflite")
    interpreter = tf.lite.Interpreter(model_path=path)
    interpreter.allocate_tensors()
    images, _ = squares(1, size=16)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], images.astype("float32"))
    interpreter.invoke()
    masks = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    assert masks.shape == (1, 16, 16) and masks.dtype == np.int32
    np.testing.assert_array_equal(masks, ft.predict_masks(images))


def void_masks(seed=0):
    """Square masks whose edges and a random scatter of pixels are void (255)."""
    images, masks = squares(4, size=16, seed=seed)
    rng = np.random.default_rng(seed)
    masks[:, 0, :] = 255
    masks[rng.random(masks.shape) < 0.2] = 255
    return images, masks


def perfect_on_labelled(masks, classes=2):
    """Logits right on every labelled pixel and confidently wrong (class 1) on void pixels."""
    labelled = np.where(masks == 255, 0, masks)
    logits = 20.0 * (np.eye(classes)[labelled] - 0.5)
    return np.where((masks == 255)[..., None], 20.0 * (np.eye(classes)[1] - 0.5), logits)


@pytest.mark.parametrize("void_share", [0.0, 0.2, 0.9])
def test_void_pixels_count_in_no_metric_nor_report(void_share):
    _, masks = squares(4, size=16)
    masks[np.random.default_rng(1).random(masks.shape) < void_share] = 255
    head = fk.SegmentationHead(2, ignore_index=255)
    outputs = perfect_on_labelled(masks)
    for metric in head.default_metrics():
        metric.update_state(masks, outputs)
        assert float(metric.result()) == pytest.approx(1.0), metric.name
    report = head.report(outputs, masks, ["bg", "square"])
    assert report["mean_iou"] == 1.0 and report["pixel_accuracy"] == 1.0
    assert report.confusion_matrix.sum() == (masks != 255).sum()
    wrong = outputs.copy()
    wrong[masks == 1] = -wrong[masks == 1]  # now the labelled square is missed
    assert head.report(wrong, masks)["pixel_accuracy"] < 1.0


def test_the_loss_ignores_void_pixels():
    _, masks = void_masks()
    for dice_weight in (0.0, 1.0):
        loss = fk.heads.SegmentationLoss(dice_weight=dice_weight, ignore_index=255)
        outputs = perfect_on_labelled(masks)
        before = float(loss(masks, outputs))
        changed = outputs.copy()
        changed[masks == 255] = np.random.default_rng(2).normal(0, 30, changed[masks == 255].shape)
        assert float(loss(masks, changed)) == pytest.approx(before, abs=1e-6)
        labelled = outputs.copy()
        labelled[masks == 1] = -labelled[masks == 1]
        assert float(loss(masks, labelled)) > before + 1.0
    clean = np.where(masks == 255, 0, masks)  # no void pixel: the same loss as without ignore_index
    np.testing.assert_allclose(float(loss(clean, outputs)),
                               float(fk.heads.SegmentationLoss(dice_weight=1.0)(clean, outputs)), rtol=1e-6)


def test_ignore_index_round_trips_in_configs_and_a_saved_model(tmp_path):
    import json

    head = fk.SegmentationHead(2, filters=4, ignore_index=255)
    rebuilt = fk.SegmentationHead.from_config(json.loads(json.dumps(head.get_config())))
    assert rebuilt.ignore_index == 255 and rebuilt.get_config() == head.get_config()
    loss = head.default_loss()
    assert fk.heads.SegmentationLoss.from_config(loss.get_config()).ignore_index == 255
    accuracy = head.default_metrics()[1]
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(accuracy)))
    assert keras.saving.deserialize_keras_object(config).ignore_index == 255
    assert fk.SegmentationHead(2).get_config()["ignore_index"] is None
    images, masks = void_masks()
    ft = fk.FineTuner(pyramid_cnn(), head=head, preprocessing="zero_one", unfreeze="all")
    history = ft.fit(images, masks, epochs=1, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    ft.save(str(tmp_path / "seg.keras"))
    loaded = fk.load(str(tmp_path / "seg.keras"))
    assert loaded.head.ignore_index == 255
    np.testing.assert_allclose(loaded.predict(images, verbose=0), ft.predict(images, verbose=0), atol=1e-5)
    scores = loaded.evaluate(images, masks, return_dict=True, verbose=0)
    assert scores == pytest.approx(ft.evaluate(images, masks, return_dict=True, verbose=0))
    report = loaded.evaluate(images, masks, report=True)
    assert report.confusion_matrix.sum() == (masks != 255).sum()


def test_plot_masks_leaves_void_pixels_clear(tmp_path):
    from finetunekit.families.segmentation.plots import _as_mask

    images, masks = void_masks()
    shown = _as_mask(masks[0], images[0], "mask", ignore_index=255)
    assert shown.max() == 1 and (shown[masks[0] == 255] == 0).all()
    path = fk.plot_masks(images[0], masks[0], str(tmp_path / "void.png"), ignore_index=255,
                         class_names=["bg", "square"])
    assert os.path.getsize(path) > 1000
