"""DetectionHead: box targets, anchors and loss, decoding to each image's pixels, COCO report, readers.

The shared harness (tests/harness.py) fits, saves and reloads a detector; these
tests check the parts on known values, mostly without building a backbone.
"""

import json
import os

import numpy as np
import pytest

import finetunekit as fk
from finetunekit.core.data.spatial_targets import SpatialContext
from finetunekit.families.detection.readers import read_coco, read_voc, read_yolo
from finetunekit.families.detection.report import coco_report

PYRAMID = {"pyramid": {"P3": (None, 4, 4, 8), "P4": (None, 2, 2, 8), "P5": (None, 1, 1, 8)}}


def built_head(**kwargs):
    """A DetectionHead built for 32x32 inputs (P3..P5 shapes), no backbone needed."""
    head = fk.DetectionHead(2, fpn_filters=8, num_head_convs=1, max_level=5, **kwargs)
    head.build(PYRAMID)
    return head


def test_encode_targets_converts_formats_learns_names_and_keeps_empty_images():
    head = fk.DetectionHead(3, bounding_box_format="xywh")
    y = {"boxes": [[[2, 3, 10, 5]], [], [[0, 0, 4, 4], [1, 1, 2, 2]]],
         "labels": [["dog"], [], ["cat", "dog"]]}
    targets, names = head.encode_targets(y)
    assert names == ["cat", "dog"]
    np.testing.assert_allclose(targets[0]["boxes"], [[2, 3, 12, 8]])
    assert targets[1]["boxes"].shape == (0, 4) and len(targets[1]["labels"]) == 0
    np.testing.assert_array_equal(targets[2]["labels"], [0, 1])


def test_head_config_round_trip_and_anchor_count():
    head = built_head(bounding_box_format="center_xywh", confidence_threshold=0.2)
    config = json.loads(json.dumps(head.get_config()))
    rebuilt = fk.DetectionHead.from_config(config)
    assert rebuilt.get_config() == head.get_config()
    assert head.image_size == (32, 32) and len(head.anchors) == (16 + 4 + 1) * 9


def inside_anchor(head):
    """The first anchor that lies wholly inside the 32x32 input."""
    inside = (head.anchors[:, :2] >= 0).all(axis=1) & (head.anchors[:, 2:] <= 32).all(axis=1)
    return int(np.flatnonzero(inside)[0])


def one_detection(head, anchor, label):
    """Model outputs with zero deltas everywhere and one confident anchor."""
    outputs = np.zeros((1, len(head.anchors), 4 + head.num_classes), "float32")
    outputs[..., 4:] = -10.0
    outputs[0, anchor, 4 + label] = 10.0
    return outputs


def test_decode_returns_boxes_in_the_input_size_and_format():
    head = built_head(bounding_box_format="xywh")
    anchor = inside_anchor(head)
    x1, y1, x2, y2 = head.anchors[anchor]
    context = SpatialContext(sizes=[(64, 96)], model_size=(32, 32))
    [found] = head.decode(one_detection(head, anchor, 1), ["cat", "dog"], context)
    np.testing.assert_allclose(found["boxes"], [[x1 * 3, y1 * 2, (x2 - x1) * 3, (y2 - y1) * 2]], atol=1e-3)
    assert found["labels"].tolist() == ["dog"] and found["scores"][0] > 0.99


def perfect_outputs(loss, y_true):
    """Outputs built from the loss's own anchor matching: right deltas, confident right classes."""
    from keras import ops

    deltas, classes = (ops.convert_to_numpy(t) for t in loss.match(y_true))
    logits = np.full((*classes.shape, loss.num_classes), -12.0, "float32")
    rows, anchors = np.nonzero(classes >= 0)
    logits[rows, anchors, classes[rows, anchors].astype(int)] = 12.0
    return np.concatenate([deltas, logits], axis=-1), (rows, anchors)


def test_loss_and_decoding_agree_on_anchor_matching():
    head = built_head()
    loss = head.default_loss()
    y_true = np.full((2, 3, 5), -1.0, "float32")  # the second image has no boxes
    y_true[0, 0] = [4, 6, 28, 26, 1]
    y_true[0, 1] = [0, 0, 12, 12, 0]
    outputs, positives = perfect_outputs(loss, y_true)
    assert len(positives[0]) >= 2 and set(positives[0]) == {0}
    assert float(loss(y_true, outputs)) < 0.01
    wrong = outputs.copy()
    wrong[..., 4:] = -wrong[..., 4:]
    assert float(loss(y_true, wrong)) > 1.0
    found = head.decode(outputs)
    assert len(found[1]["boxes"]) == 0
    order = np.argsort(found[0]["boxes"][:, 0])
    np.testing.assert_allclose(found[0]["boxes"][order], y_true[0, [1, 0], :4], atol=0.05)
    np.testing.assert_array_equal(found[0]["labels"][order], [0, 1])
    assert np.isfinite(float(loss(np.full((2, 3, 5), -1.0, "float32"), outputs)))
    config = json.loads(json.dumps(loss.get_config()))
    assert type(loss).from_config(config).get_config() == loss.get_config()


def test_coco_report_scores_perfect_and_missing_detections():
    targets = np.array([[[0, 0, 10, 10, 0], [-1, -1, -1, -1, -1]], [[5, 5, 20, 25, 1], [1, 1, 8, 9, 0]]], "float32")
    perfect = [(t[t[:, 4] >= 0, :4], np.ones(int((t[:, 4] >= 0).sum())), t[t[:, 4] >= 0, 4].astype(int))
               for t in targets]
    report = coco_report(perfect, targets, ["a", "b"], 2)
    assert report.metrics["map"] == pytest.approx(1.0) and report.metrics["map_50"] == pytest.approx(1.0)
    assert report.per_class["a"]["support"] == 2 and "map_75" in str(report)
    empty = [(np.zeros((0, 4)), np.zeros(0), np.zeros(0, int))] * 2
    assert coco_report(empty, targets, None, 2).metrics["map"] == 0.0


def write_images(folder, names, size=(20, 30)):
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    for name in names:
        Image.new("RGB", (size[1], size[0])).save(os.path.join(folder, name))


def test_read_coco_voc_and_yolo(tmp_path):
    write_images(tmp_path / "coco", ["a.png", "b.png"])
    data = {"images": [{"id": 2, "file_name": "b.png"}, {"id": 1, "file_name": "a.png"}],
            "categories": [{"id": 7, "name": "cat"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [1, 2, 3, 4]}]}
    (tmp_path / "coco" / "train.json").write_text(json.dumps(data))
    paths, targets = read_coco(tmp_path / "coco" / "train.json")
    assert [os.path.basename(p) for p in paths] == ["a.png", "b.png"]
    np.testing.assert_allclose(targets[0]["boxes"], [[1, 2, 4, 6]])
    assert targets[0]["labels"] == ["cat"] and len(targets[1]["labels"]) == 0

    write_images(tmp_path / "voc" / "JPEGImages", ["x.jpg"])
    os.makedirs(tmp_path / "voc" / "Annotations")
    (tmp_path / "voc" / "Annotations" / "x.xml").write_text(
        "<annotation><filename>x.jpg</filename><object><name>dog</name><bndbox><xmin>3</xmin>"
        "<ymin>4</ymin><xmax>10</xmax><ymax>12</ymax></bndbox></object></annotation>"
    )
    paths, targets = read_voc(tmp_path / "voc")
    np.testing.assert_allclose(targets[0]["boxes"], [[2, 3, 10, 12]])
    assert targets[0]["labels"] == ["dog"]

    write_images(tmp_path / "yolo" / "images", ["p.png", "q.png"])
    os.makedirs(tmp_path / "yolo" / "labels")
    (tmp_path / "yolo" / "labels" / "p.txt").write_text("1 0.5 0.5 0.2 0.5\n")
    (tmp_path / "yolo" / "classes.txt").write_text("cat\ndog\n")
    paths, targets = read_yolo(tmp_path / "yolo")
    np.testing.assert_allclose(targets[0]["boxes"], [[12, 5, 18, 15]], atol=1e-4)
    assert targets[0]["labels"] == ["dog"] and targets[1]["boxes"].shape == (0, 4)
    x, y = fk.data.read_detection_data(str(tmp_path / "yolo"), None)
    assert x == paths


def coco_tuner(tmp_path, **options):
    """A tiny detector fitted on a 3-image COCO json (images of two sizes)."""
    write_images(tmp_path / "coco", ["a.png", "b.png"], size=(40, 64))
    write_images(tmp_path / "coco", ["c.png"], size=(24, 24))
    data = {"images": [{"id": i, "file_name": n} for i, n in enumerate(["a.png", "b.png", "c.png"])],
            "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
            "annotations": [{"id": 1, "image_id": 0, "category_id": 1, "bbox": [4, 4, 30, 20]},
                            {"id": 2, "image_id": 2, "category_id": 2, "bbox": [2, 2, 10, 10]}]}
    (tmp_path / "coco" / "train.json").write_text(json.dumps(data))
    head = fk.DetectionHead(2, fpn_filters=8, num_head_convs=1, max_level=5, confidence_threshold=0.0)
    ft = fk.FineTuner(backbone="MobileNet", weights=None, input_shape=(32, 32, 3), head=head,
                      augment={"horizontal_flip": True}, **options)
    ft.fit(str(tmp_path / "coco" / "train.json"), epochs=1, batch_size=3, verbose=0)
    return ft


def test_outputs_stay_float32_under_mixed_precision():
    head = fk.DetectionHead(2, fpn_filters=8, num_head_convs=1, max_level=5)
    ft = fk.FineTuner(backbone="MobileNet", weights=None, input_shape=(32, 32, 3), head=head,
                      mixed_precision="bfloat16")
    outputs = ft.predict(np.zeros((2, 32, 32, 3), "uint8"), verbose=0)
    assert outputs.dtype == np.float32 and outputs.shape == (2, 21 * 9, 6)
    assert np.isfinite(outputs).all()


@pytest.mark.slow  # the default run covers this path in tests/test_examples.py (a YOLO folder)
def test_fit_on_a_coco_json_and_predict_boxes_in_each_image_size(tmp_path):
    ft = coco_tuner(tmp_path)
    assert ft.class_names == ["cat", "dog"]
    loss = ft.evaluate(str(tmp_path / "coco" / "train.json"), verbose=0)
    assert np.isfinite(loss if np.isscalar(loss) else loss[0])
    paths = [str(tmp_path / "coco" / n) for n in ["a.png", "c.png"]]
    found = ft.predict_boxes(paths)
    assert len(found) == 2 and len(found[0]["boxes"]) > 0
    for result, (height, width) in zip(found, [(40, 64), (24, 24)]):
        assert result["boxes"].min() >= 0 and result["boxes"][:, [0, 2]].max() <= width
        assert result["boxes"][:, [1, 3]].max() <= height
        assert set(result["labels"]) <= {"cat", "dog"}


@pytest.mark.slow
def test_saved_model_export_serves_raw_images(tmp_path):
    import tensorflow as tf

    ft = coco_tuner(tmp_path)
    served = tf.saved_model.load(ft.export(str(tmp_path / "served")))
    image = np.random.default_rng(0).integers(0, 255, (1, 40, 64, 3)).astype("float32")
    expected = ft.predict(image.astype("uint8"), verbose=0)
    np.testing.assert_allclose(served.serve_outputs(tf.constant(image)), expected, atol=1e-4)
    # decoded after NMS, in the image's pixels (exact agreement with predict_boxes on distinct
    # scores: tests/test_spatial_serving.py; here the scores of a barely trained model tie)
    found = served.serve(tf.constant(image))
    count = int(found["num_detections"][0])
    boxes = found["boxes"].numpy()[0, :count]
    assert count > 0 and boxes.min() >= 0 and boxes[:, [0, 2]].max() <= 64
    assert boxes[:, [1, 3]].max() <= 40 and set(found["labels"].numpy()[0, :count]) <= {0, 1}


def test_plot_boxes_writes_a_png(tmp_path):
    from PIL import Image

    image = np.full((40, 60, 3), 200, "uint8")
    prediction = {"boxes": np.array([[5, 5, 20, 30]]), "scores": np.array([0.9]), "labels": np.array(["cat"])}
    path = fk.plot_boxes(image, prediction, str(tmp_path / "boxes.png"), bounding_box_format="xywh")
    with Image.open(path) as picture:
        assert picture.format == "PNG" and picture.size[0] > 0
    with pytest.raises(ValueError, match="one image's prediction"):
        fk.plot_boxes(image, [prediction], str(tmp_path / "bad.png"))


def tiny_keras_hub_resnet():
    import keras_hub

    return keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[7], stackwise_num_filters=[64, 8, 8, 8],
        stackwise_num_blocks=[1, 1, 1, 1], stackwise_num_strides=[1, 2, 2, 2],
        block_type="basic_block", use_pre_activation=False, image_shape=(32, 32, 3),
    )


def test_a_keras_hub_image_backbone_gives_its_own_pyramid_outputs():
    from finetunekit.families.image.kinds import pyramid_outputs

    backbone = tiny_keras_hub_resnet()
    assert pyramid_outputs(backbone, 32) == backbone.pyramid_outputs


@pytest.mark.slow
def test_a_keras_hub_image_backbone_under_the_detector():
    head = fk.DetectionHead(2, fpn_filters=8, num_head_convs=1, max_level=5)
    ft = fk.FineTuner(tiny_keras_hub_resnet(), head=head)
    assert ft.predict(np.zeros((1, 32, 32, 3), "uint8"), verbose=0).shape == (1, 21 * 9, 6)


def test_normalize_pyramid_makes_the_head_blind_to_the_scale_of_its_taps():
    head = built_head(normalize_pyramid=True)
    assert set(head.tap_norms) == {"P3", "P4", "P5"}
    rng = np.random.default_rng(0)
    taps = {level: rng.normal(size=(2,) + shape[1:]).astype("float32")
            for level, shape in PYRAMID["pyramid"].items()}
    small = head({"pyramid": taps})
    large = head({"pyramid": {level: 50.0 * x for level, x in taps.items()}})
    np.testing.assert_allclose(large, small, rtol=1e-2, atol=1e-2)
    config = json.loads(json.dumps(head.get_config()))
    assert fk.DetectionHead.from_config(config).normalize_pyramid is True
    plain = built_head(normalize_pyramid=False)
    assert not plain.tap_norms and plain.get_config()["normalize_pyramid"] is False


def test_normalize_pyramid_auto_follows_the_backbone_weights_and_is_saved_as_a_bool(tmp_path):
    import keras

    weights = str(tmp_path / "mobilenet.weights.h5")
    encoder = keras.applications.MobileNet(include_top=False, weights=None, input_shape=(32, 32, 3))
    encoder.save_weights(weights)

    def tuner(source):
        head = fk.DetectionHead(2, fpn_filters=8, num_head_convs=1, max_level=5)
        assert head.normalize_pyramid == "auto"
        return fk.FineTuner(backbone="MobileNet", weights=source, input_shape=(32, 32, 3), head=head)

    random, pretrained = tuner(None), tuner(weights)
    assert random.head.normalize_pyramid is False and not random.head.tap_norms
    assert pretrained.head.normalize_pyramid is True
    assert set(pretrained.head.tap_norms) == {"P3", "P4", "P5"}
    assert pretrained.head.get_config()["normalize_pyramid"] is True
    # A saved detector reloads with weights=None: its config keeps the decision, not "auto".
    pretrained.save(str(tmp_path / "det.keras"))
    loaded = fk.load(str(tmp_path / "det.keras"))
    assert loaded.head.normalize_pyramid is True and set(loaded.head.tap_norms) == {"P3", "P4", "P5"}
    images = np.random.default_rng(0).integers(0, 255, (2, 32, 32, 3)).astype("uint8")
    np.testing.assert_allclose(loaded.predict(images, verbose=0),
                               pretrained.predict(images, verbose=0), rtol=1e-5, atol=1e-5)


def test_normalize_pyramid_auto_normalises_without_a_fine_tuner_and_old_configs_load_plain():
    head = built_head()  # built on its own: the backbone's weights are unknown
    assert head.normalize_pyramid is True and set(head.tap_norms) == {"P3", "P4", "P5"}
    config = json.loads(json.dumps(head.get_config()))
    assert config["normalize_pyramid"] is True
    assert fk.DetectionHead.from_config(config).normalize_pyramid is True
    del config["normalize_pyramid"]  # a config written before the option existed
    old = fk.DetectionHead.from_config(config)
    old.build(PYRAMID)
    assert old.normalize_pyramid is False and not old.tap_norms
    assert fk.DetectionHead(2, normalize_pyramid=1).normalize_pyramid is True
    for wrong in ("yes", 2, None):
        with pytest.raises(ValueError, match="must be True, False or \"auto\""):
            fk.DetectionHead(2, normalize_pyramid=wrong)


def test_anchor_warning_names_elongated_boxes_and_its_aspect_ratios_cover_them():
    import re
    import warnings

    from finetunekit.families.detection.anchors import best_anchor_iou

    tall = [{"boxes": np.array([[6, 2, 10, 30], [22, 2, 26, 30]], "float32")}]  # 4 x 28 px
    head = built_head(anchor_size=1.0)  # anchors from 8 px: the boxes are not too small
    with pytest.warns(UserWarning, match=r"2 of 2 boxes overlap no anchor") as caught:
        head.check_learnable(tall, [(32, 32)])
    message = str(caught[0].message)
    assert "their median height/width is 7, the anchors' 0.5 to 2" in message
    assert "anchor_size" not in message  # size is not what misses them
    suggested = re.search(r"aspect_ratios=\(([^)]*)\)", message).group(1)
    ratios = [float(r) for r in suggested.split(",")]
    assert ratios == [3.5, 7.0, 14.0]
    fixed = built_head(anchor_size=1.0, aspect_ratios=ratios)
    assert (best_anchor_iou(tall[0]["boxes"], fixed.anchors) >= 0.5).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fixed.check_learnable(tall, [(32, 32)])


def spread_detector():
    """A tiny random detector whose head weights spread boxes and scores (some boxes leave the image)."""
    import keras

    inputs = keras.Input((32, 32, 3))
    x = inputs
    for name in ("p1", "p2", "p3"):
        x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name=name)(x)
    head = fk.DetectionHead(2, fpn_filters=8, num_head_convs=1, max_level=4, num_scales=1,
                            aspect_ratios=(1.0,), confidence_threshold=0.0)
    ft = fk.FineTuner(keras.Model(inputs, x), head=head, preprocessing="zero_one",
                      class_names=["cat", "dog"])
    rng = np.random.default_rng(3)
    for weight in ft.head.weights:
        weight.assign(rng.normal(0.0, 0.3, weight.shape).astype("float32"))
    return ft


def test_report_scores_exactly_the_boxes_predict_boxes_returns():
    from finetunekit.families.detection.decode import _suppressed
    from finetunekit.families.detection.report import coco_evaluate

    ft = spread_detector()
    images = np.random.default_rng(0).integers(0, 255, (4, 40, 64, 3)).astype("uint8")
    y = {"boxes": [[[2, 2, 60, 38]], [[0, 0, 40, 30], [30, 10, 64, 40]], [[10, 5, 50, 35]], []],
         "labels": [["cat"], ["dog", "cat"], ["dog"], []]}
    report = ft.evaluate(images, y, report=True)
    found = ft.predict_boxes(images)
    ids = [(f["boxes"], f["scores"], np.array([ft.class_names.index(n) for n in f["labels"]]))
           for f in found]
    targets = np.full((4, 2, 5), -1.0, "float32")
    for i, (boxes, labels) in enumerate(zip(y["boxes"], y["labels"])):
        for j, (box, label) in enumerate(zip(boxes, labels)):
            targets[i, j] = [*box, ft.class_names.index(label)]
    metrics, _, _ = coco_evaluate(ids, targets, 2)
    assert metrics["map_50"] > 0.0
    for key in ("map", "map_50", "map_75"):
        assert report.metrics[key] == pytest.approx(metrics[key], abs=1e-6)
    raw = _suppressed(ft.predict(images, verbose=0), ft.head.anchors, ft.head.box_variance,
                      ft.head.nms_options)
    every = np.concatenate([boxes for boxes, _, _ in raw])
    assert (every < 0).any() or (every > 32).any()  # clipping matters on this data


def voc_xml(filename="", path="", box=(3, 4, 10, 12), name="dog"):
    tags = f"<filename>{filename}</filename>" if filename else ""
    tags += f"<path>{path}</path>" if path else ""
    x1, y1, x2, y2 = box
    return (f"<annotation>{tags}<object><name>{name}</name><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
            f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object></annotation>")


@pytest.mark.parametrize("images,notes", [
    ("JPEGImages", "Annotations"), ("images", "annotations"), ("Images", "annots"), (".", "."),
])
def test_voc_reader_accepts_the_common_layouts(tmp_path, images, notes):
    root = tmp_path / "set"
    write_images(root / images, ["a.jpg", "b.png"])
    os.makedirs(root / notes, exist_ok=True)
    (root / notes / "a.xml").write_text(voc_xml("a.jpg"))
    (root / notes / "b.xml").write_text(voc_xml("b.jpg", name="cat"))  # <filename> off: b.png by name
    paths, targets = fk.data.read_detection_data(str(root), None)
    assert [os.path.basename(p) for p in paths] == ["a.jpg", "b.png"]
    assert all(os.path.dirname(p) == os.path.normpath(str(root / images)) for p in paths)
    np.testing.assert_allclose(targets[0]["boxes"], [[2, 3, 10, 12]])
    assert [t["labels"] for t in targets] == [["dog"], ["cat"]]


def test_voc_reader_takes_two_folders_and_the_xml_path_inside_the_dataset_only(tmp_path):
    write_images(tmp_path / "photos", ["a.jpg"])
    write_images(tmp_path / "photos" / "day", ["a.jpg"], size=(8, 8))
    os.makedirs(tmp_path / "xml")
    (tmp_path / "xml" / "a.xml").write_text(voc_xml("a.jpg", "/elsewhere/a.jpg"))
    paths, targets = fk.data.read_detection_data(str(tmp_path / "photos"), str(tmp_path / "xml"))
    assert paths == [str(tmp_path / "photos" / "a.jpg")] and targets[0]["labels"] == ["dog"]
    (tmp_path / "xml" / "a.xml").write_text(voc_xml("a.jpg", str(tmp_path / "photos" / "day" / "a.jpg")))
    paths, _ = read_voc(tmp_path / "photos", tmp_path / "xml")
    assert paths == [str(tmp_path / "photos" / "day" / "a.jpg")]  # <path> inside: used
    write_images(tmp_path, ["outside.jpg"])
    (tmp_path / "xml" / "a.xml").write_text(voc_xml("../outside.jpg", str(tmp_path / "outside.jpg")))
    os.remove(tmp_path / "photos" / "a.jpg")
    with pytest.raises(FileNotFoundError, match="inside the dataset folder only"):
        read_voc(tmp_path / "photos", tmp_path / "xml")
