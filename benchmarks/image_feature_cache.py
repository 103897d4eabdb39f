"""Benchmark: frozen-backbone training with and without feature caching.

Trains the head of a frozen MobileNetV2 (random weights) at `--size` pixels on
synthetic uint8 images for `--epochs` epochs, once with
`fit(cache_features=False)` (the backbone runs every epoch) and once with
`cache_features=True` (one backbone pass, then the head alone), each in its
own subprocess so that peak memory is per run. Prints wall time of `fit`,
the speed-up (target >= 5x for 10 epochs), the final loss of both, and peak
memory: resident set size (`resource.getrusage`, whole process) and the peak of
Python/numpy allocations during `fit` (`tracemalloc`; TensorFlow's own buffers
are not seen by tracemalloc).

With `--unfreeze N`, the last N blocks train too: the cached run stores the
activations at the frozen/trainable boundary (float16) once and trains the
unfrozen blocks and the head on them (boundary caching, target >= 3x for 10
epochs at equal loss).

Usage:
    python benchmarks/image_feature_cache.py --size 96 --examples 512 --epochs 10
    python benchmarks/image_feature_cache.py --budget 0   # cache on disk (np.memmap)
    python benchmarks/image_feature_cache.py --unfreeze 1  # boundary caching
"""

import argparse
import json
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def run_one(args):
    import resource
    import time
    import tracemalloc

    import keras
    import numpy as np

    import finetunekit as fk

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (args.examples, args.size, args.size, 3), dtype=np.uint8)
    y = rng.integers(0, args.classes, args.examples)

    def train():
        keras.utils.set_random_seed(0)
        ft = fk.FineTuner(
            "MobileNetV2",
            head=fk.ClassificationHead(args.classes),
            weights=None,
            input_shape=(args.size, args.size, 3),
            mixed_precision=False,
            unfreeze=args.unfreeze,
        )
        ft.compile(learning_rate=1e-3, steps_per_execution=args.steps_per_execution)
        start = time.perf_counter()
        history = ft.fit(
            x,
            y,
            batch_size=args.batch_size,
            epochs=args.epochs,
            verbose=0,
            cache_features=args.cache,
            cache_memory_budget=args.budget,
        )
        return history, time.perf_counter() - start

    # Timed without tracemalloc, which slows Python-heavy code (the cached run most).
    history, wall = train()
    # The same run again under tracemalloc, for the peak of Python/numpy memory only.
    tracemalloc.start()
    train()
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    return {
        "wall_s": wall,
        "loss": history.history["loss"][-1],
        "rss_peak_bytes": rss,
        "tracemalloc_peak_bytes": traced_peak,
        "cache": getattr(history, "feature_cache", None),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--examples", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--budget", type=int, default=2 * 1024**3, help="cache memory budget")
    parser.add_argument("--steps-per-execution", type=int, default=1,
                        help="Keras compile(steps_per_execution=...), for both runs")
    parser.add_argument("--unfreeze", type=int, default=0, help="blocks that train (0: frozen)")
    parser.add_argument("--child", choices=["cached", "uncached"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.cache = args.child == "cached"
        print(json.dumps(run_one(args)))
        return
    results = {}
    for mode in ("uncached", "cached"):
        command = [sys.executable, __file__, "--child", mode] + [
            f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if k not in ("child",)
        ]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results[mode] = json.loads(out.strip().splitlines()[-1])
    state = f"unfreeze={args.unfreeze}" if args.unfreeze else "frozen"
    print(
        f"MobileNetV2 {args.size}x{args.size} {state}, {args.examples} examples, batch "
        f"{args.batch_size}, {args.epochs} epochs"
    )
    for mode, r in results.items():
        print(
            f"{mode:9s} fit {r['wall_s']:7.2f} s  final loss {r['loss']:.4f}  peak RSS "
            f"{r['rss_peak_bytes'] / 2**20:7.1f} MiB  tracemalloc peak "
            f"{r['tracemalloc_peak_bytes'] / 2**20:6.1f} MiB"
        )
    cache = results["cached"]["cache"]
    print(
        f"cache: {cache['examples']} x {cache['feature_shape']} features, "
        f"{cache['bytes'] / 2**20:.2f} MiB, on disk: {cache['on_disk']}"
    )
    speedup = results["uncached"]["wall_s"] / results["cached"]["wall_s"]
    target = "3x (boundary cache)" if args.unfreeze else "5x"
    print(f"speed-up {speedup:.1f}x (target >= {target})")


if __name__ == "__main__":
    main()
