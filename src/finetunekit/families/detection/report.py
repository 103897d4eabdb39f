"""COCO box metrics of `fk.DetectionHead` from `pycocotools` (mAP@[.5:.95], mAP@.5, per-class AP)."""

import contextlib
import io

import numpy as np

from finetunekit.core.reports import Report

COCO_HINT = 'Detection reports need pycocotools: pip install "finetunekit[detection]"'


def _coco_ground_truth(targets, num_classes):
    from pycocotools.coco import COCO

    annotations = []
    for image, rows in enumerate(targets):
        for row in rows[rows[:, 4] >= 0]:
            x1, y1, x2, y2, label = (float(v) for v in row)
            annotations.append({
                "id": len(annotations) + 1, "image_id": image, "category_id": int(label),
                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0,
            })
    coco = COCO()
    coco.dataset = {
        "images": [{"id": i} for i in range(len(targets))],
        "annotations": annotations,
        "categories": [{"id": c} for c in range(num_classes)],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _coco_detections(detections):
    found = []
    for image, (boxes, scores, labels) in enumerate(detections):
        for (x1, y1, x2, y2), score, label in zip(boxes, scores, labels, strict=True):
            found.append({
                "image_id": image, "category_id": int(label), "score": float(score),
                "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
            })
    return found


def coco_evaluate(detections, targets, num_classes):
    """Runs `pycocotools.cocoeval.COCOeval` on boxes of one image set.

    Args:
        detections: per image `(boxes (m, 4) xyxy, scores (m,), labels (m,))`.
        targets: `(n, k, 5)` rows `x1, y1, x2, y2, class`, padded with class -1.
        num_classes: int.

    Returns:
        `(metrics, per_class_ap, per_class_ap50)`: overall `map`, `map_50`,
        `map_75`, and per class id the AP (NaN for a class absent from both).
    """
    try:
        from pycocotools.cocoeval import COCOeval
    except ImportError as error:
        raise ImportError(COCO_HINT) from error
    truth = _coco_ground_truth(targets, num_classes)
    found = _coco_detections(detections)
    with contextlib.redirect_stdout(io.StringIO()):
        predicted = truth.loadRes(found) if found else _empty_results(truth)
        evaluation = COCOeval(truth, predicted, "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    stats = evaluation.stats
    metrics = {"map": _valid(stats[0]), "map_50": _valid(stats[1]), "map_75": _valid(stats[2])}
    precision = evaluation.eval["precision"]  # (iou, recall, class, area, max_dets)
    per_class, per_class_50 = [], []
    for c in range(num_classes):
        table = precision[:, :, c, 0, -1]
        per_class.append(_mean_valid(table))
        per_class_50.append(_mean_valid(table[0]))
    return metrics, per_class, per_class_50


def _empty_results(truth):
    from pycocotools.coco import COCO

    empty = COCO()
    empty.dataset = {"images": truth.dataset["images"], "annotations": [],
                     "categories": truth.dataset["categories"]}
    empty.createIndex()
    return empty


def _valid(value):
    return float(value) if value >= 0 else 0.0


def _mean_valid(values):
    values = values[values > -1]
    return float(values.mean()) if values.size else float("nan")


def coco_report(detections, targets, class_names, num_classes):
    """A `Report` of COCO box metrics: `map`, `map_50`, `map_75` and per-class `ap`, `ap_50`.

    Args:
        detections: per image `(boxes, scores, labels)` (xyxy pixels).
        targets: `(n, k, 5)` padded rows `x1, y1, x2, y2, class`.
        class_names: list of str or None.
        num_classes: int.
    """
    targets = np.asarray(targets, "float32").reshape(len(targets), -1, 5)
    metrics, ap, ap50 = coco_evaluate(detections, targets, num_classes)
    names = list(class_names) if class_names else [str(c) for c in range(num_classes)]
    labels = targets[..., 4].reshape(-1)
    per_class = {
        names[c]: {"ap": ap[c], "ap_50": ap50[c], "support": int(np.sum(labels == c))}
        for c in range(num_classes)
    }
    return Report("detection", metrics, per_class, None, names, len(targets))
