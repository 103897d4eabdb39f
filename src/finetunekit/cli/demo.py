"""`finetunekit demo`: transfer learning, measured offline in well under a minute.

The demo uses scikit-learn's bundled handwritten digits (no download):

1. **Pretraining.** A small Keras CNN (with BatchNormalization) learns to read
   the digits 0-4 from all of their images.
2. **Transfer.** That CNN, without its classifier, becomes the `backbone=` of a
   `fk.FineTuner` that learns the *other* digits, 5-9, from only a few labelled
   images per class: first the new head alone (backbone frozen), then the whole
   network at a lower learning rate (`FineTuner.fine_tune`).
3. **Baseline.** The same CNN architecture, randomly initialised, trained on
   the same few labels for the same number of epochs (`unfreeze="all"`).

Both models are scored on all remaining images of the digits 5-9.

The 8x8 digits of scikit-learn are centred and so small that raw pixels are
already an excellent representation: a logistic regression on pixels reaches
about 90% from 5 labels per class, and a CNN pretrained on 0-4 does not beat
that. To make the task one where learned features matter, as they do for
photos, each digit is placed at a random position in a 16x16 frame. The
pretraining task is also made richer by asking the CNN to tell the digits 0-4
apart in each of four orientations (20 classes), which makes its features more
general. No image of a digit 5-9 is seen during pretraining.
"""

import sys
import time

import numpy as np

SOURCE_DIGITS = (0, 1, 2, 3, 4)
TARGET_DIGITS = (5, 6, 7, 8, 9)


def load_digit_frames(frame_size=16, seed=0):
    """Loads scikit-learn's digits, each placed at a random position in a larger frame.

    Args:
        frame_size: int. Height and width of the frame (>= 8). `8` keeps the
            original centred digits. Defaults to `16`.
        seed: int. Seed of the positions.

    Returns:
        `(images, labels)`: float32 images of shape
        `(1797, frame_size, frame_size, 1)` with values in 0..255 and int
        labels 0..9.

    Example:
    ```python
    images, labels = load_digit_frames(16)
    images.shape  # (1797, 16, 16, 1)
    ```
    """
    from sklearn.datasets import load_digits

    if frame_size < 8:
        raise ValueError(f"`frame_size` must be at least 8. Received: frame_size={frame_size}")
    digits = load_digits()
    small = (digits.images * (255.0 / 16.0)).astype("float32")
    rng = np.random.default_rng(seed)
    images = np.zeros((len(small), frame_size, frame_size, 1), dtype="float32")
    offsets = rng.integers(0, frame_size - 8 + 1, size=(len(small), 2))
    for image, digit, (row, col) in zip(images, small, offsets, strict=True):
        image[row : row + 8, col : col + 8, 0] = digit
    return images, digits.target.astype("int64")


def build_cnn(input_shape=(16, 16, 1), widths=(16, 32, 64), name="digits_cnn"):
    """Builds the small functional CNN used as a backbone: conv-BN-ReLU blocks.

    Each block is a nested Keras model (`block1`, `block2`, ...), so that
    `FineTuner(unfreeze=N)` counts whole blocks.

    Args:
        input_shape: tuple. `(height, width, channels)`. Defaults to `(16, 16, 1)`.
        widths: tuple of ints. Filters of each block; all but the last block
            end in 2x2 max pooling. Defaults to `(16, 32, 64)`.
        name: str. Model name.

    Returns:
        A `keras.Model` mapping images (scaled to 0..1) to feature maps.

    Example:
    ```python
    cnn = build_cnn((16, 16, 1))
    cnn.output_shape  # (None, 4, 4, 64)
    ```
    """
    import keras

    inputs = keras.Input(input_shape, name="images")
    x = inputs
    for index, filters in enumerate(widths, start=1):
        block = f"block{index}"
        layers = [
            keras.layers.Conv2D(
                filters, 3, padding="same", use_bias=False, name=f"{block}_conv"
            ),
            keras.layers.BatchNormalization(name=f"{block}_bn"),
            keras.layers.ReLU(name=f"{block}_relu"),
        ]
        if index < len(widths):
            layers.append(keras.layers.MaxPooling2D(name=f"{block}_pool"))
        x = keras.Sequential(layers, name=block)(x)
    return keras.Model(inputs, x, name=name)


def _rotations(images, labels, num_classes, rotations):
    """Adds the 90/180/270 degree rotations of `images` as new classes."""
    rotated = [np.rot90(images, k, axes=(1, 2)) for k in range(rotations)]
    targets = [labels + k * num_classes for k in range(rotations)]
    return np.concatenate(rotated), np.concatenate(targets)


def pretrain_backbone(
    images, labels, input_shape, epochs=10, rotations=4, batch_size=64, learning_rate=2e-3, seed=0
):
    """Pretrains `build_cnn` on labelled images; returns the CNN without its classifier.

    Args:
        images: float array `(n, h, w, 1)`, values 0..255.
        labels: int array `(n,)`, class ids from 0.
        input_shape: tuple. Input shape of the CNN.
        epochs: int. Training epochs. Defaults to `10`.
        rotations: int. 1 to 4: how many orientations (0, 90, 180, 270
            degrees) of each image are used, each as its own class.
            Defaults to `4`.
        batch_size: int. Defaults to `64`.
        learning_rate: float. Adam learning rate. Defaults to `2e-3`.
        seed: int. Random seed.

    Returns:
        `(cnn, train_accuracy)`: the pretrained feature extractor and the
        accuracy on its (last epoch's) training data.
    """
    import keras

    keras.utils.set_random_seed(seed)
    num_classes = int(labels.max()) + 1
    x, y = _rotations(images, labels, num_classes, rotations)
    cnn = build_cnn(input_shape)
    inputs = keras.Input(input_shape)
    features = cnn(keras.layers.Rescaling(1.0 / 255.0)(inputs))
    pooled = keras.layers.GlobalAveragePooling2D()(features)
    outputs = keras.layers.Dense(num_classes * rotations, activation="softmax")(pooled)
    model = keras.Model(inputs, outputs, name="pretraining")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    history = model.fit(x, y, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0)
    return cnn, float(history.history["accuracy"][-1])


def _accuracy(model, images, labels):
    predicted = np.asarray(model.predict_labels(images, batch_size=1024))
    return float(np.mean(predicted == np.asarray(labels)))


def _few_label_split(labels, labels_per_class, rng):
    """`labels_per_class` training images of each target digit; the other target images test."""
    target = np.flatnonzero(np.isin(labels, TARGET_DIGITS))
    fewest = min(int(np.sum(labels == digit)) for digit in TARGET_DIGITS)
    if not 1 <= labels_per_class < fewest:
        raise ValueError(
            f"`labels_per_class` must be between 1 and {fewest - 1} (the rarest digit has "
            f"{fewest} images). Received: labels_per_class={labels_per_class}"
        )
    train = np.concatenate(
        [
            rng.choice(target[labels[target] == digit], labels_per_class, replace=False)
            for digit in TARGET_DIGITS
        ]
    )
    return train, np.setdiff1d(target, train)


def _timed_step(progress, text, work):
    """Runs `work()`; returns `(its value, seconds)`, with a line on stderr before and after.

    The lines go out at once (flushed) and to stderr, so that `--json` output stays JSON.
    """
    if progress:
        print(f"finetunekit demo: {text}", file=sys.stderr, flush=True)
    tick = time.perf_counter()
    value = work()
    seconds = time.perf_counter() - tick
    if progress:
        print(f"finetunekit demo: {text.split()[0]} done in {seconds:.1f} s", file=sys.stderr,
              flush=True)  # fmt: skip
    return value, seconds


def _head():
    import finetunekit as fk

    return fk.ClassificationHead(num_classes=len(TARGET_DIGITS))


def _transfer(cnn, data, seed, epochs, head_epochs, learning_rates, batch_size):
    """Fine-tunes the pretrained `cnn`: the new head alone, then the whole network."""
    import keras

    import finetunekit as fk

    keras.utils.set_random_seed(seed)
    model = fk.FineTuner(backbone=cnn, head=_head(), preprocessing="zero_one",
                         mixed_precision=False)  # fmt: skip
    model.fine_tune(
        *data, epochs=epochs, freeze_epochs=head_epochs, unfreeze="all",
        learning_rate=learning_rates[0], fine_tune_learning_rate=learning_rates[1],
        batch_size=batch_size, verbose=0,
    )  # fmt: skip
    return model


def _from_scratch(input_shape, data, seed, epochs, learning_rate, batch_size):
    """Trains the same CNN, randomly initialised, and a new head on the same data and epochs."""
    import keras

    import finetunekit as fk

    keras.utils.set_random_seed(seed)
    cnn = build_cnn(input_shape, name="digits_cnn_scratch")
    model = fk.FineTuner(backbone=cnn, head=_head(), preprocessing="zero_one", unfreeze="all",
                         mixed_precision=False)  # fmt: skip
    model.compile(learning_rate=learning_rate)
    model.fit(*data, batch_size=batch_size, epochs=epochs, verbose=0)
    return model


def run_demo(
    seed=0, verbose=1, labels_per_class=5, frame_size=16, pretrain_epochs=10, rotations=4,
    head_epochs=20, fine_tune_epochs=20, batch_size=10, head_learning_rate=1e-2,
    fine_tune_learning_rate=1e-3, scratch_learning_rate=1e-2, progress=None,
):
    """Measures transfer learning against training from scratch on few labels.

    Pretrains a small CNN on the digits 0-4, fine-tunes it with
    `fk.FineTuner` on `labels_per_class` labelled images of each digit 5-9,
    and compares with the same architecture trained from random weights on
    the same images for the same number of epochs. Everything is measured;
    nothing is downloaded.

    Args:
        seed: int. Seed of the data split and of all training. Defaults to `0`.
        verbose: int. `0` silent, `1` prints a summary table. Defaults to `1`.
        labels_per_class: int. Labelled training images per new digit.
            Defaults to `5`.
        frame_size: int. Size of the frame the 8x8 digits are placed in.
            Defaults to `16`.
        pretrain_epochs: int. Epochs of pretraining on 0-4. Defaults to `10`.
        rotations: int. Orientations of the pretraining task (1 to 4).
            Defaults to `4`.
        head_epochs: int. Epochs that train only the new head. Defaults to `20`.
        fine_tune_epochs: int. Epochs that then train the whole network.
            Defaults to `20`.
        batch_size: int. Fine-tuning batch size. Defaults to `10`.
        head_learning_rate: float. Learning rate of the head-only stage.
        fine_tune_learning_rate: float. Learning rate of the full stage.
        scratch_learning_rate: float. Learning rate of the baseline.
        progress: bool or None. Print a line on stderr as each of the three
            steps starts and ends. Defaults to `bool(verbose)`.

    Returns:
        A dict with `transfer_accuracy`, `scratch_accuracy` (fractions of
        the test images classified correctly), `transfer_seconds`,
        `scratch_seconds` (training time of each, in seconds),
        `pretrain_seconds`, `total_seconds`, `pretrain_accuracy`, `seed`,
        `labels_per_class`, `num_train`, `num_test` and `epochs`.

    Example:
    ```python
    from finetunekit.cli.demo import run_demo

    result = run_demo(seed=0)
    result["transfer_accuracy"] > result["scratch_accuracy"]  # True
    ```
    """
    start = time.perf_counter()
    images, labels = load_digit_frames(frame_size, seed=seed)
    input_shape = images.shape[1:]
    rng = np.random.default_rng(seed)

    source = np.isin(labels, SOURCE_DIGITS)
    train, test = _few_label_split(labels, labels_per_class, rng)
    # String labels: the FineTuner learns the class names "5".."9".
    train_x, train_y = images[train], labels[train].astype(str)
    test_x, test_y = images[test], labels[test].astype(str)
    epochs = head_epochs + fine_tune_epochs
    progress = bool(verbose) if progress is None else progress

    # 1. Pretrain on the digits 0-4.
    (cnn, pretrain_accuracy), pretrain_seconds = _timed_step(
        progress, f"1/3 pretraining a small CNN on the digits 0-4 ({pretrain_epochs} epochs)",
        lambda: pretrain_backbone(
            images[source], labels[source] - min(SOURCE_DIGITS), input_shape,
            epochs=pretrain_epochs, rotations=rotations, seed=seed,
        ),
    )  # fmt: skip

    # 2. Transfer: head first (backbone frozen), then the whole network.
    transfer, transfer_seconds = _timed_step(
        progress, f"2/3 fine-tuning it on {len(train)} labelled images of the digits 5-9 "
        f"({head_epochs} + {fine_tune_epochs} epochs)",
        lambda: _transfer(cnn, (train_x, train_y), seed + 1, epochs, head_epochs,
                          (head_learning_rate, fine_tune_learning_rate), batch_size),
    )  # fmt: skip
    transfer_accuracy = _accuracy(transfer, test_x, test_y)

    # 3. Baseline: the same architecture from random weights, same data and epochs.
    scratch, scratch_seconds = _timed_step(
        progress, f"3/3 training the same CNN from scratch on those images ({epochs} epochs)",
        lambda: _from_scratch(input_shape, (train_x, train_y), seed + 2, epochs,
                              scratch_learning_rate, batch_size),
    )  # fmt: skip
    scratch_accuracy = _accuracy(scratch, test_x, test_y)

    result = dict(
        seed=seed, labels_per_class=labels_per_class, num_train=len(train), num_test=len(test),
        epochs=epochs, pretrain_accuracy=pretrain_accuracy, pretrain_seconds=pretrain_seconds,
        transfer_accuracy=transfer_accuracy, transfer_seconds=transfer_seconds,
        scratch_accuracy=scratch_accuracy, scratch_seconds=scratch_seconds,
        total_seconds=time.perf_counter() - start,
    )
    if verbose:
        print(format_report(result, num_source=int(source.sum()), rotations=rotations))
    return result


def format_report(result, num_source=None, rotations=4):
    """Formats a `run_demo` result as a small text table.

    Args:
        result: dict returned by `run_demo`.
        num_source: int or None. Number of pretraining images, for the header.
        rotations: int. Orientations of the pretraining task, for the header.

    Returns:
        str.
    """
    source = "-".join(str(d) for d in (SOURCE_DIGITS[0], SOURCE_DIGITS[-1]))
    target = "-".join(str(d) for d in (TARGET_DIGITS[0], TARGET_DIGITS[-1]))
    images = f"{num_source} images" if num_source is not None else "all images"
    lines = [
        "finetunekit demo: transfer learning on scikit-learn's digits (offline)",
        f"  pretraining: a small CNN learns digits {source} ({images}, "
        f"{rotations} orientations), {result['pretrain_seconds']:.1f} s",
        f"  new task:    digits {target} from {result['labels_per_class']} labelled images "
        f"per class ({result['num_train']} in all), {result['epochs']} epochs; "
        f"test on {result['num_test']} images",
        "",
        f"  {'method':<38}{'accuracy':>9}{'seconds':>9}",
        f"  {'transfer (CNN pretrained on ' + source + ')':<38}"
        f"{result['transfer_accuracy']:>9.3f}{result['transfer_seconds']:>9.1f}",
        f"  {'from scratch (same CNN, random init)':<38}"
        f"{result['scratch_accuracy']:>9.3f}{result['scratch_seconds']:>9.1f}",
        "",
        f"  seed {result['seed']}; total {result['total_seconds']:.1f} s",
    ]
    return "\n".join(lines)
