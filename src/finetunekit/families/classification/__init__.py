"""Classification family: pooled heads on any kind's features.

`ClassificationHead` (single- and multi-label) and `RegressionHead`, on the
`features` of images, text, audio or vectors.
"""
