"""Object-detection data on disk: COCO json, Pascal VOC folders and YOLO txt folders.

Each reader returns `(image_paths, targets)` with one `{"boxes", "labels"}`
dict per image: `(k, 4)` xyxy pixel boxes of that image and `(k,)` class
names (or ids where the format has no names). `read_detection_data` is what
`fk.DetectionHead.read_data` calls on `fit(x, y)` / `evaluate(x, y)`.
"""

import json
import os

import numpy as np

from finetunekit.core.data.images import IMAGE_EXTENSIONS, list_images
from finetunekit.core.notices import warn_user
from finetunekit.families.detection.voc import VOC_LAYOUTS, read_voc, voc_layout

YOLO_NAME_FILES = ("classes.txt", "obj.names", "classes.names")


def per_image_targets(y):
    """`{"boxes": [...], "labels": [...]}` or a list of per-image dicts -> a list of dicts.

    Raises:
        ValueError: the two lists differ in length, or `y` has another form.
    """
    if isinstance(y, dict):
        missing = {"boxes", "labels"} - set(y)
        if missing:
            raise ValueError(
                f"Detection targets need the keys 'boxes' and 'labels'; {sorted(missing)} "
                f"missing. Received keys: {sorted(y)}"
            )
        boxes, labels = list(y["boxes"]), list(y["labels"])
        if len(boxes) != len(labels):
            raise ValueError(
                f"y['boxes'] has {len(boxes)} entries but y['labels'] has {len(labels)}: both "
                "need one entry per image (an empty list for an image without objects)."
            )
        return [{"boxes": b, "labels": c} for b, c in zip(boxes, labels, strict=True)]
    if isinstance(y, (list, tuple)) and y and all(isinstance(t, dict) for t in y):
        for index, target in enumerate(y):
            if not {"boxes", "labels"} <= set(target):
                raise ValueError(
                    f"Image {index}: a per-image target needs the keys 'boxes' and 'labels'. "
                    f"Received keys: {sorted(target)}"
                )
        return list(y)
    raise ValueError(
        "Detection targets are y={'boxes': [...], 'labels': [...]} with one (k, 4) box array "
        "and one (k,) label array per image, or a list of such dicts per image (or pass a "
        f"COCO json, a Pascal VOC folder or a YOLO folder as x). Received: {type(y).__name__}"
    )


def read_detection_data(x, y):
    """Reads detection data in any supported form into `(images, per-image targets)`.

    Args:
        x: images (array, paths), a COCO json file, an images folder (with
            `y` a COCO json or a folder of VOC `.xml` files), a Pascal VOC
            folder (`Annotations/` + `JPEGImages/`, `annotations/` or
            `annots/` + `images/`, or `.xml` files beside the images) or a YOLO folder (`images/` + `labels/`, or
            `.txt` files beside the images), or a plain folder of images
            (no targets: for `predict_boxes`).
        y: `{"boxes": [...], "labels": [...]}`, a list of per-image dicts,
            a COCO json path, a folder of VOC `.xml` files, or None for a
            dataset folder.

    Returns:
        `(x, y)` with `y` a list of `{"boxes", "labels"}` dicts (or None).

    Example:
    ```python
    paths, targets = fk.data.read_detection_data("voc2012/", None)
    ```
    """
    path = os.fspath(x) if isinstance(x, (str, os.PathLike)) else None
    if isinstance(y, (str, os.PathLike)):
        return _read_annotation_path(path, os.fspath(y))
    if path is not None and y is None:
        layout = dataset_layout(path)
        if layout is not None:
            return {"coco": read_coco, "voc": read_voc, "yolo": read_yolo}[layout](path)
        if os.path.isdir(path):  # a plain folder of images, to predict on: no targets
            return list_images(path), None
    if y is None:
        return x, None
    return x, per_image_targets(y)


def _read_annotation_path(images, annotations):
    """`fit(images, "train.json")` (COCO) or `fit(images_dir, xml_dir)` (Pascal VOC)."""
    if annotations.lower().endswith(".json"):
        return read_coco(annotations, image_dir=images)
    if os.path.isdir(annotations):
        if images is None or not os.path.isdir(images):
            raise ValueError(
                f"y={annotations!r} is a folder of annotations: pass the images folder as x, "
                f"fit(images_dir, {annotations!r}). Received x of type {type(images).__name__}."
            )
        return read_voc(images, xml_dir=annotations)
    raise ValueError(
        f"y={annotations!r} is neither a COCO .json file nor a folder of Pascal VOC .xml files. "
        f"Pascal VOC layouts read: {'; '.join(VOC_LAYOUTS)}; or pass y={{'boxes': [...], "
        "'labels': [...]}."
    )


def dataset_layout(path):
    """`"coco"` (a json file), `"voc"` or `"yolo"` (folders) for a detection dataset, else None.

    Args:
        path: str. A file or folder.

    Returns:
        The layout name, or None (e.g. a plain folder of images).

    Example:
    ```python
    dataset_layout("voc2012/")  # "voc"
    ```
    """
    if path.lower().endswith(".json") and os.path.isfile(path):
        return "coco"
    if voc_layout(path) is not None:
        return "voc"
    if os.path.isdir(path) and _is_yolo_folder(path):
        return "yolo"
    return None


def read_coco(json_path, image_dir=None):
    """Reads a COCO detection json (`images`, `annotations`, `categories`).

    Args:
        json_path: str. The json file.
        image_dir: str or None. Folder the `file_name`s are relative to.
            Defaults to the json's own folder.

    Returns:
        `(paths, targets)`; labels are category names; crowd boxes are skipped.
    """
    json_path = os.fspath(json_path)
    data = _load_coco_json(json_path)
    folder = os.fspath(image_dir) if image_dir else os.path.dirname(os.path.abspath(json_path))
    names = _coco_categories(json_path, data["categories"])
    images = sorted(data["images"], key=lambda item: item["id"])
    paths = [os.path.join(folder, item["file_name"]) for item in images]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(
            f"{json_path} lists {len(missing)} image file(s) that do not exist in {folder!r}, "
            f"e.g. {missing[:3]}. Pass the images folder: fit(images_folder, {json_path!r})."
        )
    rows = {item["id"]: ([], []) for item in images}
    unlisted = 0
    for number, note in enumerate(data["annotations"]):
        _check_coco_annotation(json_path, number, note, names)
        if note.get("iscrowd", 0):
            continue
        if note["image_id"] not in rows:
            unlisted += 1
            continue
        x1, y1, width, height = (float(v) for v in note["bbox"])
        rows[note["image_id"]][0].append([x1, y1, x1 + width, y1 + height])
        rows[note["image_id"]][1].append(names[note["category_id"]])
    if unlisted:
        warn_user(
            f"{json_path}: {unlisted} of {len(data['annotations'])} annotation(s) belong to "
            "image ids that are not in 'images'; they are left out. Add those images to "
            "'images' (with file_name) to train on them."
        )
    return paths, [_target(*rows[item["id"]]) for item in images]


def _load_coco_json(json_path):
    """The parsed COCO file, or a clear error for a file that is not UTF-8 JSON of that shape."""
    try:
        with open(json_path, encoding="utf-8") as handle:
            data = json.load(handle)
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{json_path} is not UTF-8 text ({error.reason} at byte {error.start}); a COCO "
            "annotation file is UTF-8 JSON. Re-save it as UTF-8."
        ) from None
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{json_path} is not valid JSON ({error.msg}, line {error.lineno} column "
            f"{error.colno}); a COCO annotation file is one JSON object."
        ) from None
    if not isinstance(data, dict):
        raise ValueError(f"{json_path} is not a COCO detection file: not a JSON object.")
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise ValueError(f"{json_path} is not a COCO detection file: no {key!r} list.")
    for index, item in enumerate(data["images"]):
        if not isinstance(item, dict) or not {"id", "file_name"} <= set(item):
            raise ValueError(
                f"{json_path}: images[{index}] needs 'id' and 'file_name'. Received: {item!r}"
            )
    ids = [item["id"] for item in data["images"]]
    repeated = sorted({i for i in ids if ids.count(i) > 1}, key=str)
    if repeated:
        raise ValueError(
            f"{json_path}: image id(s) {repeated[:5]} appear more than once in 'images'; each "
            "image needs its own id (annotations point at images by id)."
        )
    return data


def _coco_categories(json_path, categories):
    """`{category id: name}`; refuses categories without an id or two categories of one name."""
    names = {}
    for index, category in enumerate(categories):
        if not isinstance(category, dict) or "id" not in category:
            raise ValueError(f"{json_path}: categories[{index}] has no 'id'. Received: {category!r}")
        names[category["id"]] = str(category.get("name", category["id"]))
    values = list(names.values())
    repeated = sorted({n for n in values if values.count(n) > 1})
    if repeated:
        raise ValueError(
            f"{json_path}: category name(s) {repeated[:5]} belong to more than one category id; "
            "they would merge into one class. Give each category its own name."
        )
    return names


def _check_coco_annotation(json_path, number, note, names):
    missing = sorted({"image_id", "category_id", "bbox"} - set(note))
    if missing:
        raise ValueError(
            f"{json_path}: annotations[{number}] has no {', '.join(map(repr, missing))}. Each "
            "annotation needs image_id, category_id and bbox [x, y, width, height]."
        )
    if note["category_id"] not in names:
        raise ValueError(
            f"{json_path}: annotation {note.get('id')} has category_id "
            f"{note['category_id']}, which is not in 'categories'."
        )
    bbox = note["bbox"]
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        raise ValueError(
            f"{json_path}: annotation {note.get('id')} has bbox {bbox!r}; expected "
            "[x, y, width, height]."
        )


def _is_yolo_folder(folder):
    if os.path.isdir(os.path.join(folder, "labels")):
        return True
    return any(f.endswith(".txt") and f not in YOLO_NAME_FILES for f in os.listdir(folder))


def _yolo_files(folder):
    images_dir = os.path.join(folder, "images")
    labels_dir = os.path.join(folder, "labels")
    if not os.path.isdir(images_dir):  # images at the top, labels in labels/ or beside them
        images_dir = folder
        labels_dir = labels_dir if os.path.isdir(labels_dir) else folder
    images = sorted(
        os.path.join(images_dir, f) for f in os.listdir(images_dir)
        if f.lower().endswith(IMAGE_EXTENSIONS)
    )
    if not images:
        raise ValueError(f"No images in {images_dir!r} (a YOLO folder has images/ and labels/).")
    labels = [os.path.join(labels_dir, os.path.splitext(os.path.basename(p))[0] + ".txt")
              for p in images]
    return images, labels


def read_yolo(folder):
    """Reads a YOLO folder: one `class cx cy w h` line (normalised to 0-1) per box.

    Labels go in `labels/NAME.txt` next to `images/NAME.jpg`, or beside the
    images; an image without a txt file has no boxes. Class names come from
    `classes.txt` / `obj.names` when present (one per line), else ids.

    Returns:
        `(paths, targets)` with boxes in xyxy pixels of each image.
    """
    from PIL import Image

    folder = os.fspath(folder)
    images, label_files = _yolo_files(folder)
    names = _yolo_names(folder)
    targets, clipped = [], 0
    for image, file in zip(images, label_files, strict=True):
        rows = _yolo_rows(file, names)
        with Image.open(image) as opened:
            width, height = opened.size
        scale = np.array([width, height, width, height], "float32")
        cx, cy, w, h = (rows[0][:, i] for i in range(4))
        corners = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        clipped += int(np.any((corners < -1e-6) | (corners > 1 + 1e-6), axis=1).sum())
        targets.append(_target(np.clip(corners, 0.0, 1.0) * scale, rows[1]))
    if clipped:
        warn_user(
            f"{folder}: {clipped} YOLO box(es) extend past the edge of their image and are "
            "clipped to it; check the labels (cx +- w/2 and cy +- h/2 should lie in 0-1)."
        )
    return images, targets


def _yolo_names(folder):
    for name in YOLO_NAME_FILES:
        file = os.path.join(folder, name)
        if os.path.isfile(file):
            with open(file, encoding="utf-8") as handle:
                return [line.strip() for line in handle if line.strip()]
    return None


def _yolo_rows(file, names):
    boxes, labels = [], []
    if not os.path.isfile(file):
        return np.zeros((0, 4), "float32"), []
    with open(file, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            parts = line.split()
            try:
                values = [float(v) for v in parts]
            except ValueError:
                values = []
            if len(values) != 5 or values[0] != int(values[0]) or min(values[1:]) < 0 \
                    or max(values[1:]) > 1:
                raise ValueError(
                    f"{file}, line {number}: {line.strip()!r} is not a YOLO box. Each line is "
                    "'class cx cy w h': an integer class id and four numbers normalised to 0-1."
                )
            label = int(values[0])
            if label < 0:
                raise ValueError(
                    f"{file}, line {number}: class id {label} is negative; YOLO class ids count "
                    "from 0 (the first name in classes.txt)."
                )
            if values[3] <= 0 or values[4] <= 0:
                raise ValueError(
                    f"{file}, line {number}: {line.strip()!r} has a box of zero width or "
                    "height; drop the line or fix the box."
                )
            if names is not None and label >= len(names):
                raise ValueError(
                    f"{file}, line {number}: class id {label} but the names file lists only "
                    f"{len(names)} classes."
                )
            labels.append(names[label] if names is not None else label)
            boxes.append(values[1:])
    return np.asarray(boxes, "float32").reshape(-1, 4), labels


def _target(boxes, labels):
    return {"boxes": np.asarray(boxes, "float32").reshape(-1, 4), "labels": list(labels)}
