"""Benchmark: FineTuner vs the same model and pipeline written in plain Keras.

Both models are MobileNetV2 (random weights, `weights=None`) at `--size` pixels
with the same input graph (uint8 images -> float -> `"tf"` normalisation ->
backbone -> global average pooling -> softmax dense), the same AdamW optimizer,
batch size and synthetic uint8 data, in the same process. BatchNorm layers are
frozen in both (FineTuner's rule). Two modes: `frozen` (head only; FineTuner's
feature cache off, so the raw per-step cost is compared) and `unfrozen`
(whole backbone trains).

After one warm-up epoch each (tracing), the two models are fitted alternately
for `--rounds` rounds of `--epochs` epochs, and the median epoch time of each
gives examples/s. The overhead ratio is FineTuner time / plain Keras time - 1
(target: <= 3 %).

Usage:
    python benchmarks/image_overhead.py --size 96 --examples 256 --rounds 3
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


class EpochTimer:
    def __init__(self):
        import keras

        class _Timer(keras.callbacks.Callback):
            def on_epoch_begin(inner, epoch, logs=None):  # noqa: N805
                inner.start = time.perf_counter()

            def on_epoch_end(inner, epoch, logs=None):  # noqa: N805
                self.times.append(time.perf_counter() - inner.start)

        self.times = []
        self.callback = _Timer()


def plain_keras_model(size, classes, trainable):
    import keras

    backbone = keras.applications.MobileNetV2(
        include_top=False, weights=None, input_shape=(size, size, 3)
    )
    backbone.trainable = trainable
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    inputs = keras.Input((size, size, 3), dtype="uint8")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(keras.ops.cast(inputs, "float32"))
    x = backbone(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(classes, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    optimizer = keras.optimizers.AdamW(learning_rate=1e-4, weight_decay=0.01)
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    model.compile(
        optimizer=optimizer,
        loss="sparse_categorical_crossentropy",
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    return model


def fine_tuner(size, classes, trainable):
    import finetunekit as fk

    ft = fk.FineTuner(
        "MobileNetV2",
        head=fk.ClassificationHead(classes),
        weights=None,
        input_shape=(size, size, 3),
        unfreeze="all" if trainable else 0,
        mixed_precision=False,
    )
    ft.compile(learning_rate=1e-4)
    return ft


def run_mode(mode, args, x, y):
    import keras

    trainable = mode == "unfrozen"
    keras.utils.set_random_seed(0)
    models = {
        "keras": plain_keras_model(args.size, args.classes, trainable),
        "finetunekit": fine_tuner(args.size, args.classes, trainable),
    }
    extra = {"finetunekit": {"cache_features": False}, "keras": {}}
    timers = {name: EpochTimer() for name in models}
    for name, model in models.items():  # warm-up: tracing and first-epoch costs
        model.fit(x, y, batch_size=args.batch_size, epochs=1, verbose=0, **extra[name])
    for _ in range(args.rounds):
        for name, model in models.items():
            model.fit(
                x,
                y,
                batch_size=args.batch_size,
                epochs=args.epochs,
                verbose=0,
                callbacks=[timers[name].callback],
                **extra[name],
            )
    result = {}
    for name, timer in timers.items():
        median = statistics.median(timer.times)
        result[name] = {"epoch_s": median, "examples_per_s": len(x) / median}
    result["overhead"] = result["finetunekit"]["epoch_s"] / result["keras"]["epoch_s"] - 1.0
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--examples", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=2, help="epochs per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", default="frozen,unfrozen")
    args = parser.parse_args()

    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (args.examples, args.size, args.size, 3), dtype=np.uint8)
    y = rng.integers(0, args.classes, args.examples)
    print(
        f"keras {keras.__version__}, backend {keras.backend.backend()}, MobileNetV2 "
        f"{args.size}x{args.size}, {args.examples} examples, batch {args.batch_size}, "
        f"{args.rounds} rounds x {args.epochs} epochs after warm-up"
    )
    for mode in args.modes.split(","):
        result = run_mode(mode, args, x, y)
        for name in ("keras", "finetunekit"):
            r = result[name]
            print(
                f"{mode:9s} {name:12s} {r['examples_per_s']:8.1f} examples/s "
                f"(median epoch {r['epoch_s']:.3f} s)"
            )
        print(f"{mode:9s} overhead     {100 * result['overhead']:+.1f} % (target <= 3 %)")


if __name__ == "__main__":
    main()
