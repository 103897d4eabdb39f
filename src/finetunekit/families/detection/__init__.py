"""Detection family: `DetectionHead` (RetinaNet-style), COCO / VOC / YOLO readers, report, plots."""
