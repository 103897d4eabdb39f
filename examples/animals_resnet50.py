"""Cat / dog / other: fine-tune an ImageNet ResNet50 on your own photos.

Three ways to run it:

```shell
# Your photos: one sub-folder per class, e.g. photos/cat/*.jpg, photos/dog/*.jpg,
# photos/other/*.jpg (any class names work; these three are what the example is for).
python examples/animals_resnet50.py --data photos/

# A TensorFlow Datasets set (downloads it, and the ImageNet weights, once).
# cats_vs_dogs has no "other" images, so that run learns cat vs. dog.
python examples/animals_resnet50.py --tfds cats_vs_dogs --limit 2000

# Offline smoke test in seconds: random images, random weights, 32x32 inputs.
python examples/animals_resnet50.py --smoke
```

The recipe is the standard one for a pretrained backbone: ImageNet weights,
in-model ResNet preprocessing (so the saved model takes raw images), light
augmentation, a few epochs that train only the new head, then the last two
ResNet stages (`conv4`, `conv5`) unfrozen at a 10x lower learning rate, with
BatchNorm statistics kept frozen. A held-out test split gets a per-class
report (`sklearn.metrics.classification_report`).

Extras: none beyond finetunekit itself.
"""

import argparse
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

#: Packages this example needs beyond finetunekit: import name -> what to pip install.
EXTRAS = {}


CLASSES = ("cat", "dog", "other")
AUGMENT = {
    "horizontal_flip": True,
    "rotation_range": 10,
    "zoom_range": 0.1,
    "width_shift_range": 0.1,
    "height_shift_range": 0.1,
}


def build_model(num_classes, class_names, weights="imagenet", image_size=224, augment=True):
    """ResNet50 (ImageNet) + a small classification head, preprocessing inside the model."""
    import finetunekit as fk

    return fk.FineTuner(
        backbone="resnet50",
        head=fk.ClassificationHead(num_classes=num_classes, hidden_units=(256,), dropout=0.2),
        weights=weights,
        input_shape=(image_size, image_size, 3),
        augment=AUGMENT if augment else None,
        class_names=class_names,
    )


def split_folder(directory, test_fraction, seed):
    """Lists a class folder and splits it, stratified, into train and test paths."""
    from sklearn.model_selection import train_test_split

    from finetunekit.core.data.images import list_image_folder

    paths, labels, class_names = list_image_folder(directory)
    if len(class_names) < 2:
        raise ValueError(f"{directory!r} needs at least two class sub-folders, e.g. cat/ and dog/.")
    missing = [c for c in CLASSES if c not in class_names]
    if missing:
        print(f"note: no sub-folder for {', '.join(missing)}; training on {class_names}")
    train_x, test_x, train_y, test_y = train_test_split(
        paths, labels, test_size=test_fraction, random_state=seed, stratify=labels
    )
    return (train_x, train_y), (test_x, test_y), class_names


def _stratify(labels, fraction):
    """Stratifies a split only when every class can appear on both sides."""
    _, counts = np.unique(labels, return_counts=True)
    held_out = int(np.ceil(len(labels) * fraction))
    if counts.min() >= 2 and len(counts) <= held_out <= len(labels) - len(counts):
        return labels
    return None


def report(model, test_x, test_y, class_names, predicted=None):
    """Prints accuracy and a per-class precision/recall/F1 table on held-out data."""
    from sklearn.metrics import classification_report

    if predicted is None:
        predicted = model.predict_labels(test_x)
    accuracy = float(np.mean(np.asarray(predicted) == np.asarray(test_y)))
    print(f"\nHeld-out accuracy: {accuracy:.3f} on {len(test_y)} images")
    print(
        classification_report(
            test_y, predicted, labels=list(class_names), digits=3, zero_division=0
        )
    )
    return predicted


def schedule(args):
    """`fine_tune` arguments from the command line: head warm-up, then unfrozen stages."""
    return {
        "epochs": args.epochs,
        "freeze_epochs": args.freeze_epochs,
        "unfreeze": args.unfreeze,
        "learning_rate": args.learning_rate,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "verbose": 2,
    }


def run_folder(args):
    (train_x, train_y), (test_x, test_y), class_names = split_folder(
        args.data, args.test_fraction, args.seed
    )
    validation = None
    if args.validation_split:
        from sklearn.model_selection import train_test_split

        train_x, val_x, train_y, val_y = train_test_split(
            train_x,
            train_y,
            test_size=args.validation_split,
            random_state=args.seed,
            stratify=_stratify(train_y, args.validation_split),
        )
        validation = (val_x, val_y)
    print(
        f"Classes: {class_names}; {len(train_x)} training, "
        f"{len(validation[0]) if validation else 0} validation and {len(test_x)} test images"
    )
    model = build_model(len(class_names), class_names, args.weights, args.image_size)
    model.fine_tune(train_x, train_y, validation_data=validation, **schedule(args))
    report(model, test_x, test_y, class_names)
    model.save(args.out)
    print(f"Saved {args.out}")


def run_tfds(args):
    """cats_vs_dogs from TensorFlow Datasets (downloaded on first use): 80 % train, 20 % test."""
    import finetunekit as fk

    if args.limit:
        splits = (f"train[:{args.limit}]", f"train[-{max(args.limit // 4, 1)}:]")
    else:
        splits = ("train[:80%]", "train[80%:]")
    train, test = (fk.data.TFDS("cats_vs_dogs", split=split) for split in splits)
    # Labels and class names ("cat", "dog") come from the dataset.
    model = build_model(2, None, args.weights, args.image_size)
    model.fine_tune(train, validation_data=test, **schedule(args))
    print(model.evaluate(test, batch_size=args.batch_size, report=True))
    model.save(args.out)
    print(f"Saved {args.out}")


def write_random_images(root, per_class=8, size=(40, 40), seed=0):
    """Writes random PNGs into root/cat, root/dog and root/other."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for index, name in enumerate(CLASSES):
        os.makedirs(os.path.join(root, name), exist_ok=True)
        for i in range(per_class):
            # A faint per-class tint so the classes are not pure noise.
            image = rng.integers(0, 200, size + (3,), dtype=np.uint8)
            image[..., index] += 55
            Image.fromarray(image).save(os.path.join(root, name, f"{name}_{i}.png"))
    return root


def run_smoke(args):
    """Offline end-to-end check in seconds: train, report, save, reload, same predictions.

    Random images and random weights, 32x32 inputs and one head warm-up epoch
    (tracing ResNet50's backward pass for the unfrozen stage would cost more
    than everything else together); the stages a real run unfreezes are
    checked on the reloaded model.
    """
    import finetunekit as fk

    with tempfile.TemporaryDirectory() as tmp:
        data = write_random_images(os.path.join(tmp, "photos"))
        (train_x, train_y), (test_x, test_y), class_names = split_folder(data, 0.25, args.seed)
        model = build_model(len(class_names), class_names, weights=None, image_size=32)
        model.fine_tune(
            train_x,
            train_y,
            epochs=1,
            freeze_epochs=1,
            unfreeze=args.unfreeze,
            batch_size=8,
            seed=args.seed,
            verbose=0,
        )
        before = model.predict(test_x, verbose=0)
        predicted = model.head.decode(before, model.class_names)
        report(model, test_x, test_y, class_names, predicted=predicted)
        path = os.path.join(tmp, "animals_resnet50.keras")
        model.save(path)
        reloaded = fk.load(path)
        after = reloaded.predict(test_x, verbose=0)
        np.testing.assert_allclose(after, before, rtol=1e-4, atol=1e-5)
        assert reloaded.class_names == list(class_names), reloaded.class_names
        reloaded_labels = reloaded.head.decode(after, reloaded.class_names)
        assert list(reloaded_labels) == list(predicted), "labels changed on reload"
        blocks = reloaded.set_unfreeze(args.unfreeze)
        print(f"after the warm-up, a real run unfreezes: {blocks}")
    print("smoke test passed: trained, saved, reloaded, same predictions")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Fine-tune an ImageNet ResNet50 to tell cats, dogs and other images apart.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="folder with cat/, dog/ and other/ sub-folders")
    source.add_argument(
        "--tfds", choices=("cats_vs_dogs",), help="a TensorFlow Datasets set (downloads it)"
    )
    source.add_argument("--smoke", action="store_true", help="offline smoke test in seconds")
    parser.add_argument("--epochs", type=int, default=8, help="epochs in all")
    parser.add_argument("--freeze-epochs", type=int, default=3, help="head-only epochs first")
    parser.add_argument("--unfreeze", type=int, default=2, help="ResNet stages unfrozen after")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="head-only stage LR")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--test-fraction", type=float, default=0.2, help="held out for report")
    parser.add_argument("--validation-split", type=float, default=0.1, help="of the training part")
    parser.add_argument("--limit", type=int, default=0, help="--tfds: training examples (0: all)")
    parser.add_argument(
        "--weights", default="imagenet", help='"imagenet", "none" (random) or a weights file'
    )
    parser.add_argument("--out", default="animals_resnet50.keras", help="saved model path")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.weights.lower() == "none":
        args.weights = None
    return args


def main(argv=None):
    args = parse_args(argv)
    import keras

    keras.utils.set_random_seed(args.seed)
    if args.smoke:
        run_smoke(args)
    elif args.tfds:
        run_tfds(args)
    else:
        run_folder(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
