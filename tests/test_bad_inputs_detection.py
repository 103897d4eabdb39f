"""The bad-input catalogue, object detection: boxes, labels, box formats and detection files.

One row per case: `(id, run, error, fragment)`, as in `tests/test_bad_inputs.py`.
The same rows are in docs/errors.md ("Object detection"). Boxes go through the
head and the spatial image pipeline (no model is built) unless the row is about
the model.
"""

import json
import os

import numpy as np
import pytest

import finetunekit as fk
from finetunekit.families.image.spatial_pipeline import SpatialPipeline
from tests.catalogue import run_case, undocumented
from tests.conftest import tiny_cnn

X2 = np.zeros((2, 32, 32, 3), "uint8")


def prepare(boxes, labels, box_format="xyxy", num_classes=2, x=X2):
    head = fk.DetectionHead(num_classes, bounding_box_format=box_format)
    return SpatialPipeline(head, (32, 32, 3)).prepare(x, {"boxes": boxes, "labels": labels})


def prepare_files(x, y=None):
    return SpatialPipeline(fk.DetectionHead(2), (32, 32, 3)).prepare(x, y)


def coco_file(tmp, images=None, annotations=None, categories=None, raw=None):
    """A COCO json in `tmp` beside one 8x8 image `a.png` (id 1); `raw` bytes replace the json."""
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp / "a.png")
    data = {"images": images if images is not None else [{"id": 1, "file_name": "a.png"}],
            "annotations": annotations if annotations is not None else [
                {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4]}],
            "categories": categories if categories is not None else [{"id": 1, "name": "cat"}]}
    (tmp / "train.json").write_bytes(raw if raw is not None else json.dumps(data).encode())
    return prepare_files(str(tmp / "train.json"))


def yolo_folder(tmp, lines, labels_apart=False):
    """Two 8x8 images with YOLO lines for the first; labels in labels/ beside them if asked."""
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp / "a.png")
    Image.new("RGB", (8, 8)).save(tmp / "b.png")
    folder = tmp / "labels" if labels_apart else tmp
    folder.mkdir(exist_ok=True)
    (folder / "a.txt").write_text(lines)
    (folder / "b.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    return prepare_files(str(tmp))


def labels_folder_beside_images(tmp):
    """images at the top and labels/ beside them: the boxes are read (not zero boxes)."""
    from finetunekit.families.detection.readers import read_yolo

    yolo_folder(tmp, "0 0.5 0.5 0.25 0.25\n", labels_apart=True)
    _, targets = read_yolo(str(tmp))
    assert [len(t["boxes"]) for t in targets] == [1, 1]
    np.testing.assert_allclose(targets[0]["boxes"][0], [3, 3, 5, 5])


def small_boxes(tmp):
    """Boxes of 4 px on 32 px images: the smallest anchors (P3, anchor_size 4) are 32 px."""
    from tests.test_detection import built_head

    head = built_head()
    box, fits = [[2, 2, 6, 6]], [[0, 0, 32, 32]]
    return SpatialPipeline(head, (32, 32, 3)).prepare(X2, {"boxes": [box, fits], "labels": [[0], [1]]})


def tall_boxes(tmp):
    """4 x 28 px boxes (height/width 7) against 8 px anchors of height/width 0.5 to 2."""
    from tests.test_detection import built_head

    head = built_head(anchor_size=1.0)
    tall = [[6, 2, 10, 30], [22, 2, 26, 30]]
    return SpatialPipeline(head, (32, 32, 3)).prepare(X2, {"boxes": [tall, tall], "labels": [[0, 0], [1, 1]]})


def coco_missing_files(tmp):
    data = {"images": [{"id": 1, "file_name": "gone.jpg"}], "annotations": [],
            "categories": [{"id": 1, "name": "cat"}]}
    (tmp / "train.json").write_text(json.dumps(data))
    return prepare_files(str(tmp / "train.json"))


def yolo_malformed_line(tmp):
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp / "a.png")
    (tmp / "a.txt").write_text("0 0.5 0.5 0.2\n")
    return prepare_files(str(tmp))


def voc_malformed_xml(tmp):
    os.makedirs(tmp / "Annotations")
    (tmp / "Annotations" / "a.xml").write_text("<annotation><filename>a.jpg</filename><object>"
                                               "<name>cat</name></object></annotation>")
    return prepare_files(str(tmp))


def voc_folder_without_xml(tmp):
    os.makedirs(tmp / "images")
    os.makedirs(tmp / "xml")
    return prepare_files(str(tmp / "images"), str(tmp / "xml"))


def voc_image_outside_the_dataset(tmp):
    from PIL import Image

    os.makedirs(tmp / "set" / "annotations")
    Image.new("RGB", (8, 8)).save(tmp / "secret.jpg")
    (tmp / "set" / "annotations" / "a.xml").write_text(
        "<annotation><filename>../../secret.jpg</filename><object><name>cat</name><bndbox>"
        "<xmin>1</xmin><ymin>1</ymin><xmax>4</xmax><ymax>4</ymax></bndbox></object></annotation>"
    )
    return prepare_files(str(tmp / "set"))


def backbone_without_p3(tmp):
    return fk.FineTuner(tiny_cnn((32, 32, 3)), head=fk.DetectionHead(2), preprocessing="zero_one")


BOX = [[2, 2, 12, 12]]

# fmt: off
CASES = [
    ("detection_box_outside_image", lambda t: prepare([BOX, [[20, 20, 40, 30]]], [[0], [1]]), ValueError, r"Image 1, box 0: \[20\.0, 20\.0, 40\.0, 30\.0\] lies outside its 32x32 .* check `bounding_box_format`"),
    ("detection_x2_less_than_x1", lambda t: prepare([BOX, [[12, 2, 4, 10]]], [[0], [1]]), ValueError, r"Image 1, box 0: .* has x2 < x1 or y2 < y1 .* Is `bounding_box_format` right"),
    ("detection_box_format_mismatch", lambda t: prepare([BOX, [[10, 10, 30, 30]]], [[0], [1]], "xywh"), ValueError, r"Image 1, box 0: \[10\.0, 10\.0, 40\.0, 40\.0\] lies outside .* check `bounding_box_format`"),
    ("detection_normalised_boxes", lambda t: prepare([[[0.1, 0.1, 0.5, 0.6]], []], [[0], []]), ValueError, r"the boxes look normalised, but DetectionHead takes pixel coordinates .* Multiply x by the image width"),
    ("detection_class_id_out_of_range", lambda t: prepare([BOX, BOX], [[0], [2]]), ValueError, r"Box class ids must be whole numbers in 0\.\.1 \(num_classes=2\); found 2"),
    ("detection_more_class_names_than_classes", lambda t: prepare([BOX, BOX], [["cat"], ["dog"]], num_classes=1), ValueError, r"The data has 2 classes \(\['cat', 'dog'\]\) but the head has num_classes=1"),
    ("detection_boxes_labels_count_mismatch", lambda t: prepare([BOX, BOX], [[0], [0, 1]]), ValueError, r"Image 1 has 1 boxes but 2 labels: give one class label per box"),
    ("detection_boxes_labels_lists_differ", lambda t: prepare([BOX, BOX], [[0]]), ValueError, r"y\['boxes'\] has 2 entries but y\['labels'\] has 1: both need one entry per image"),
    ("detection_box_not_four_numbers", lambda t: prepare([[[1, 2, 3]], BOX], [[0], [0]]), ValueError, r"Image 0: boxes have shape \(1, 3\); expected \(k, 4\)"),
    ("detection_targets_not_boxes_and_labels", lambda t: prepare_files(X2, [0, 1]), ValueError, r"Detection targets are y=\{'boxes': \[\.\.\.\], 'labels': \[\.\.\.\]\}"),
    ("detection_unknown_box_format", lambda t: fk.DetectionHead(2, bounding_box_format="rel_xyxy"), ValueError, r"Unknown bounding_box_format 'rel_xyxy'\. Expected one of xyxy, yxyx, xywh, center_xywh, center_yxhw"),
    ("detection_coco_not_json", lambda t: coco_file(t, raw=b"{images: ["), ValueError, r"train\.json is not valid JSON \(.*line 1 column 2\); a COCO annotation file is one JSON object"),
    ("detection_coco_not_utf8", lambda t: coco_file(t, raw=b'{"images": "\xff\xfe"}'), ValueError, r"train\.json is not UTF-8 text .*; a COCO annotation file is UTF-8 JSON"),
    ("detection_coco_annotation_without_bbox", lambda t: coco_file(t, annotations=[{"id": 1, "image_id": 1, "category_id": 1}]), ValueError, r"annotations\[0\] has no 'bbox'\. Each annotation needs image_id, category_id and bbox \[x, y, width, height\]"),
    ("detection_coco_image_without_file_name", lambda t: coco_file(t, images=[{"id": 1}]), ValueError, r"images\[0\] needs 'id' and 'file_name'"),
    ("detection_coco_duplicate_image_ids", lambda t: coco_file(t, images=[{"id": 1, "file_name": "a.png"}] * 2), ValueError, r"image id\(s\) \[1\] appear more than once in 'images'"),
    ("detection_coco_duplicate_category_names", lambda t: coco_file(t, categories=[{"id": 1, "name": "cat"}, {"id": 2, "name": "cat"}]), ValueError, r"category name\(s\) \['cat'\] belong to more than one category id; they would merge into one class"),
    ("detection_coco_annotations_for_unlisted_images", lambda t: coco_file(t, annotations=[{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4]}, {**{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4]}, "id": 2, "image_id": 7}]), UserWarning, r"1 of 2 annotation\(s\) belong to image ids that are not in 'images'; they are left out"),
    ("detection_yolo_negative_class", lambda t: yolo_folder(t, "-1 0.5 0.5 0.2 0.2\n"), ValueError, r"a\.txt, line 1: class id -1 is negative; YOLO class ids count from 0"),
    ("detection_yolo_zero_size_box", lambda t: yolo_folder(t, "0 0.5 0.5 0 0.2\n"), ValueError, r"a\.txt, line 1: '0 0\.5 0\.5 0 0\.2' has a box of zero width or height"),
    ("detection_yolo_box_past_the_edge", lambda t: yolo_folder(t, "0 0.9 0.5 0.4 0.2\n"), UserWarning, r"1 YOLO box\(es\) extend past the edge of their image and are clipped to it"),
    ("detection_yolo_labels_folder_beside_images", labels_folder_beside_images, None, None),
    ("detection_zero_size_box", lambda t: prepare([BOX, [[4, 4, 4, 10]]], [[0], [1]]), ValueError, r"1 box\(es\) have zero width or height, e\.g\. image 1: \[4\.0, 4\.0, 4\.0, 10\.0\]"),
    ("detection_no_boxes_at_all", lambda t: prepare([[], []], [[], []]), ValueError, r"None of the 2 images has a box: a detector learns from boxes"),
    ("detection_boxes_more_elongated_than_every_anchor", tall_boxes, UserWarning, r"4 of 4 boxes overlap no anchor with IoU >= 0\.5 at the model's 32x32 input \(their median side is 11 px; the smallest anchors are 8 px; their median height/width is 7, the anchors' 0\.5 to 2\): each trains only through the one anchor it is forced onto, and is learned poorly\. Pass anchor shapes around your boxes' own, e\.g\. DetectionHead\(aspect_ratios=\(3\.5, 7, 14\)\)"),
    ("detection_boxes_smaller_than_every_anchor", small_boxes, UserWarning, r"1 of 2 boxes overlap no anchor with IoU >= 0\.5 at the model's 32x32 input \(their median side is 4 px; the smallest anchors are 32 px\): each trains only through the one anchor it is forced onto, and is learned poorly\. Pass a larger input_shape, or a smaller DetectionHead\(anchor_size=\.\.\.\)"),
    ("detection_coco_json_missing_files", coco_missing_files, FileNotFoundError, r"lists 1 image file\(s\) that do not exist in .* Pass the images folder"),
    ("detection_yolo_malformed_line", yolo_malformed_line, ValueError, r"a\.txt, line 1: '0 0\.5 0\.5 0\.2' is not a YOLO box\. Each line is 'class cx cy w h'"),
    ("detection_voc_malformed_xml", voc_malformed_xml, ValueError, r"a\.xml is not a readable Pascal VOC annotation .* <bndbox> with numeric xmin/ymin/xmax/ymax"),
    ("detection_voc_folder_without_xml", voc_folder_without_xml, ValueError, r"The annotations folder .* has no Pascal VOC \.xml annotations in a layout finetunekit reads\. Accepted layouts: Annotations/ \+ JPEGImages/ \(Pascal VOC\); annotations/ or annots/ \+ images/; \.xml files beside their images; fit\(images_dir, xml_dir\)"),
    ("detection_targets_path_not_annotations", lambda t: prepare_files(X2, str(t / "labels.txt")), ValueError, r"y='.*labels\.txt' is neither a COCO \.json file nor a folder of Pascal VOC \.xml files\. Pascal VOC layouts read: Annotations/ \+ JPEGImages/"),
    ("detection_voc_folder_without_images_folder", lambda t: prepare_files(X2, str(t)), ValueError, r"is a folder of annotations: pass the images folder as x, fit\(images_dir, "),
    ("detection_voc_image_outside_the_dataset", voc_image_outside_the_dataset, FileNotFoundError, r"a\.xml: its image \(<filename> \.\./\.\./secret\.jpg.* inside the dataset folder only: a <path> or <filename> leading out of it is not read"),
    ("detection_backbone_without_p3", backbone_without_p3, ValueError, r"DetectionHead needs the stride-8 feature map P3 of the backbone; its pyramid levels: none"),
]
# fmt: on


@pytest.mark.parametrize("case_id,run,error,fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input(tmp_path, case_id, run, error, fragment):
    run_case(run, error, fragment, tmp_path)


def test_rows_are_documented():
    assert undocumented([c[0] for c in CASES], "Object detection") == []
