"""Segmentation family: `SegmentationHead` (U-Net / FPN), mask readers, scores and plots."""
