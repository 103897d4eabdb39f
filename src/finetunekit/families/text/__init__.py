"""Text family: keras-hub encoders (BERT-family presets, `hf://`, local folders) and NER.

Kind: `TextEncoderBackbone`; the text pipeline (tokenise once, length buckets,
word-level targets), text augmentation and `TokenClassificationHead`.
"""
