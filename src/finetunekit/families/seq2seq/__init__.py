"""Sequence-to-sequence family: keras-hub BART / T5 and warm-started encoder-decoders."""
