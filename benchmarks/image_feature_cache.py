"""Benchmark: frozen-backbone training with and without feature caching.

Trains the head of a frozen MobileNetV2 (random weights) at `--size` pixels on
synthetic uint8 images for `--epochs` epochs three ways, each in its own
subprocess so that peak memory is per run: the same model written in plain
Keras (`keras.applications.MobileNetV2`, `trainable=False`, BatchNorm frozen,
`compile`/`fit`: the baseline of the issue-14 target), FineTuner with
`fit(cache_features=False)` (the backbone runs every epoch) and FineTuner with
`cache_features=True` (one backbone pass, then the head alone). Prints wall
time of `fit`, the speed-ups of the cached run over both (target >= 8x plain
Keras for 10 epochs), the final loss of the FineTuner runs, and peak
memory: resident set size (`resource.getrusage`, whole process) and the peak of
Python/numpy allocations during `fit` (`tracemalloc`; TensorFlow's own buffers
are not seen by tracemalloc).

With `--unfreeze N`, the last N blocks train too: the cached run stores the
activations at the frozen/trainable boundary (float16) once and trains the
unfrozen blocks and the head on them (boundary caching, target >= 3x plain
Keras for 10 epochs, at equal loss with the uncached FineTuner run). The
plain-Keras model then trains the very layers FineTuner's `unfreeze=N` trains.

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


def fine_tuner(args):
    import finetunekit as fk

    return fk.FineTuner(
        "MobileNetV2",
        head=fk.ClassificationHead(args.classes),
        weights=None,
        input_shape=(args.size, args.size, 3),
        mixed_precision=False,
        unfreeze=args.unfreeze,
    )


def plain_keras(args):
    """The same network in plain Keras; trains the layers FineTuner's `unfreeze` trains."""
    import keras

    trainable = {
        layer.name for layer in fine_tuner(args).backbone.layers
        if layer.trainable and layer.weights
    } if args.unfreeze else set()
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    backbone = keras.applications.MobileNetV2(
        include_top=False, weights=None, input_shape=(args.size, args.size, 3)
    )
    for layer in backbone.layers:
        layer.trainable = layer.name in trainable
    inputs = keras.Input((args.size, args.size, 3), dtype="uint8")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(keras.ops.cast(inputs, "float32"))
    x = backbone(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(args.classes, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer=keras.optimizers.AdamW(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=args.steps_per_execution,
    )
    return model


def run_one(args):
    import resource
    import time
    import tracemalloc

    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (args.examples, args.size, args.size, 3), dtype=np.uint8)
    y = rng.integers(0, args.classes, args.examples)

    def train():
        keras.utils.set_random_seed(0)
        if args.child == "keras":
            model, extra = plain_keras(args), {}
        else:
            model = fine_tuner(args)
            model.compile(learning_rate=1e-3, steps_per_execution=args.steps_per_execution)
            extra = dict(cache_features=args.cache, cache_memory_budget=args.budget)
        start = time.perf_counter()
        history = model.fit(
            x, y, batch_size=args.batch_size, epochs=args.epochs, verbose=0, **extra
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
    parser.add_argument("--child", choices=["keras", "cached", "uncached"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.cache = args.child == "cached"
        print(json.dumps(run_one(args)))
        return
    results = {}
    for mode in ("keras", "uncached", "cached"):
        command = [sys.executable, __file__, "--child", mode] + [
            f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if k not in ("child",)
        ]
        # Every child with oneDNN's kernels, as `import finetunekit` sets (the children import
        # Keras first); TF_ENABLE_ONEDNN_OPTS=0 in the environment measures TensorFlow's choice.
        env = dict({"TF_ENABLE_ONEDNN_OPTS": "1"}, **os.environ)
        out = subprocess.run(command, check=True, capture_output=True, text=True,
                             env=env).stdout
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
    target = "3x (boundary cache)" if args.unfreeze else "8x"
    for mode in ("keras", "uncached"):
        speedup = results[mode]["wall_s"] / results["cached"]["wall_s"]
        versus = "plain Keras" if mode == "keras" else "FineTuner uncached"
        print(f"speed-up over {versus}: {speedup:.1f}x" + (
            f" (target >= {target})" if mode == "keras" else ""))


if __name__ == "__main__":
    main()
