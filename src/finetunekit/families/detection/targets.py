"""Box targets of `fk.DetectionHead`: checks, class ids and box-format conversion."""

import numpy as np

from finetunekit.families.detection.readers import per_image_targets


def _image_arrays(index, target):
    boxes = np.asarray(target["boxes"] if target["boxes"] is not None else [], "float32")
    labels = np.asarray(target["labels"] if target["labels"] is not None else [])
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(
            f"Image {index}: boxes have shape {boxes.shape}; expected (k, 4), one row of 4 "
            "coordinates per object."
        )
    labels = labels.reshape(-1)
    if len(labels) != len(boxes):
        raise ValueError(
            f"Image {index} has {len(boxes)} boxes but {len(labels)} labels: give one class "
            "label per box."
        )
    if not np.isfinite(boxes).all():
        raise ValueError(f"Image {index}: boxes contain NaN or infinite coordinates.")
    return boxes, labels


def _class_ids(all_labels, class_names, num_classes):
    flat = np.concatenate([np.asarray(lab, dtype=object) for lab in all_labels]) if all_labels \
        else np.zeros(0, object)
    flat = [v.decode() if isinstance(v, bytes) else v for v in flat]
    if flat and isinstance(flat[0], str):
        if class_names is None:
            class_names = sorted(set(flat))
        index = {name: i for i, name in enumerate(class_names)}
        unknown = sorted(set(flat) - set(index))
        if unknown:
            raise ValueError(f"Box labels {unknown[:6]} are not among the classes {class_names}.")
        if len(class_names) > num_classes:
            raise ValueError(
                f"The data has {len(class_names)} classes ({class_names[:8]}) but the head "
                f"has num_classes={num_classes}. Set num_classes={len(class_names)}."
            )
        ids = np.array([index[v] for v in flat], "int32")
        return ids, list(class_names)
    ids = np.asarray(flat, "float64")
    if len(ids) and (np.any(ids != np.round(ids)) or ids.min() < 0 or ids.max() >= num_classes):
        bad = ids[(ids != np.round(ids)) | (ids < 0) | (ids >= num_classes)][0]
        raise ValueError(
            f"Box class ids must be whole numbers in 0..{num_classes - 1} "
            f"(num_classes={num_classes}); found {bad:g}. Labels are class ids from 0 (no "
            "background class), or class names."
        )
    return ids.astype("int32"), class_names


def encode_box_targets(y, class_names, num_classes, box_format):
    """Per-image `{"boxes": (k, 4) xyxy float32, "labels": (k,) int32}` and the class names.

    Args:
        y: per-image targets (see `per_image_targets`).
        class_names: list of str or None.
        num_classes: int.
        box_format: the user's `bounding_box_format`.
    """
    targets = per_image_targets(y)
    arrays = [_image_arrays(i, t) for i, t in enumerate(targets)]
    ids, class_names = _class_ids([lab for _, lab in arrays], class_names, num_classes)
    counts = np.cumsum([0] + [len(b) for b, _ in arrays])
    every = np.concatenate([b for b, _ in arrays]) if arrays else np.zeros((0, 4), "float32")
    xyxy = to_xyxy(every, box_format)
    if len(xyxy) and np.abs(xyxy).max() <= 1.0 and np.ptp(xyxy[:, [0, 2]]) > 0:
        raise ValueError(
            "All box coordinates lie in [0, 1]: the boxes look normalised, but DetectionHead "
            f"takes pixel coordinates ({box_format!r} in pixels of each image). Multiply x by "
            "the image width and y by its height."
        )
    _check_box_areas(xyxy, counts, box_format)
    encoded = [
        {"boxes": xyxy[counts[i]:counts[i + 1]], "labels": ids[counts[i]:counts[i + 1]]}
        for i in range(len(arrays))
    ]
    return encoded, class_names


def _check_box_areas(xyxy, counts, box_format):
    """Refuses data without boxes and boxes of zero width or height (`check_targets` refuses
    inverted ones, knowing the image sizes)."""
    images = len(counts) - 1
    if images and not len(xyxy):
        raise ValueError(
            f"None of the {images} images has a box: a detector learns from boxes. Check that "
            "the annotations were read (the labels folder, the json's image ids), or pass "
            "y={'boxes': [...], 'labels': [...]}."
        )
    flat = (xyxy[:, 2] == xyxy[:, 0]) | (xyxy[:, 3] == xyxy[:, 1])
    if flat.any():
        first = int(np.flatnonzero(flat)[0])
        image = int(np.searchsorted(counts, first, side="right") - 1)
        raise ValueError(
            f"{int(flat.sum())} box(es) have zero width or height, e.g. image {image}: "
            f"{xyxy[first].tolist()} as xyxy (read as bounding_box_format={box_format!r}); a "
            "detector cannot learn from them. Fix or drop them."
        )


def to_xyxy(boxes, box_format):
    """`(n, 4)` boxes in `box_format` -> xyxy (Keras' `bounding_boxes.convert_format`)."""
    return _convert(boxes, box_format, "xyxy")


def to_user_boxes(boxes, box_format):
    """`(n, 4)` xyxy boxes -> `box_format`."""
    return _convert(boxes, "xyxy", box_format)


def _convert(boxes, source, target):
    import keras

    boxes = np.asarray(boxes, "float32").reshape(-1, 4)
    if source == target or not len(boxes):
        return boxes
    converted = keras.utils.bounding_boxes.convert_format(boxes, source=source, target=target)
    return np.asarray(keras.ops.convert_to_numpy(converted), "float32")
