"""Semantic segmentation: a U-Net decoder on a pretrained CNN, trained on image and mask folders.

Two ways to run it:

```shell
# Your data: a folder of images and a folder of PNG masks with the same file
# names (photo_01.jpg <-> photo_01.png), one class id per mask pixel (0 = background).
python examples/segmentation.py --images data/images --masks data/masks --num-classes 3

# Offline smoke test in seconds: generated shapes on noise, a small random CNN, 32x32 inputs.
python examples/segmentation.py --smoke --plot masks.png
```

The recipe: an ImageNet EfficientNetV2-B0 encoder, `fk.SegmentationHead`
(U-Net skip connections from the backbone's pyramid), flips and small
rotations that move the masks with the images, two-stage `fine_tune` (the
decoder first, then the top encoder blocks), a held-out report (mean IoU,
per-class IoU and Dice, pixel accuracy) and masks predicted at each image's
own size. The saved model takes raw images of any size.

Extras (checked at start, before any training): matplotlib, only with `--plot`

```shell
pip install "finetunekit[plot]"
```
"""

import argparse
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from _extras import check_extras  # noqa: E402  (examples/_extras.py, beside this script)

#: Packages this example needs beyond finetunekit: import name -> what to pip install.
EXTRAS = {"matplotlib": '"finetunekit[plot]"'}  # with --plot


AUGMENT = {"horizontal_flip": True, "rotation_range": 10}


def build_model(num_classes, class_names=None, backbone="efficientnetv2b0", weights="imagenet",
                image_size=256, filters=64):
    """A pretrained CNN + U-Net decoder; preprocessing inside the model."""
    import finetunekit as fk

    return fk.FineTuner(
        backbone=backbone, weights=weights, input_shape=(image_size, image_size, 3),
        head=fk.SegmentationHead(num_classes, decoder="unet", filters=filters, dice_weight=0.5),
        augment=AUGMENT, class_names=class_names,
    )


def tiny_backbone(size=32):
    """A small random CNN with stride-4 and stride-8 stages (for the offline smoke test)."""
    import keras

    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="stem")(inputs)
    x = keras.layers.Conv2D(16, 3, strides=4, padding="same", activation="relu", name="stage2")(x)
    x = keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu", name="stage3")(x)
    return keras.Model(inputs, x, name="tiny_cnn")


def shapes(n, size=40, seed=0):
    """Noisy images of varying size with a square (class 1) and a disc (class 2) each."""
    rng = np.random.default_rng(seed)
    images, masks = [], []
    for _ in range(n):
        height, width = size + rng.integers(-8, 9, 2)
        image = rng.integers(0, 90, (height, width, 3)).astype("uint8")
        mask = np.zeros((height, width), "uint8")
        side = rng.integers(8, 14)
        top, left = rng.integers(0, height - side), rng.integers(0, width - side)
        mask[top:top + side, left:left + side] = 1
        radius = rng.integers(4, 8)
        cy, cx = rng.integers(radius, height - radius), rng.integers(radius, width - radius)
        yy, xx = np.mgrid[:height, :width]
        mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2] = 2
        image[mask == 1] = (230, 60, 40)
        image[mask == 2] = (40, 200, 230)
        images.append(image)
        masks.append(mask)
    return images, masks


def write_folders(root, images, masks):
    """Writes images (JPEG/PNG) and PNG masks with matching names; returns the two folders."""
    from PIL import Image

    folders = os.path.join(root, "images"), os.path.join(root, "masks")
    for folder in folders:
        os.makedirs(folder, exist_ok=True)
    for i, (image, mask) in enumerate(zip(images, masks, strict=True)):
        Image.fromarray(image).save(os.path.join(folders[0], f"shape_{i:03d}.png"))
        Image.fromarray(mask, mode="L").save(os.path.join(folders[1], f"shape_{i:03d}.png"))
    return folders


def split(paths, masks, fraction=0.2):
    cut = max(1, int(len(paths) * fraction))
    return (paths[cut:], masks[cut:]), (paths[:cut], masks[:cut])


def run(images_dir, masks_dir, num_classes, class_names, smoke, plot, workdir, epochs=None):
    import finetunekit as fk
    from finetunekit.families.segmentation.masks import pair_mask_folder, read_mask

    paths, mask_paths = pair_mask_folder(images_dir, masks_dir)
    masks = [read_mask(p) for p in mask_paths]
    (train_x, train_y), (test_x, test_y) = split(paths, masks)
    if smoke:
        import keras

        import finetunekit as fk

        keras.utils.set_random_seed(0)
        ft = fk.FineTuner(tiny_backbone(32), preprocessing="zero_one", unfreeze="all",
                          head=fk.SegmentationHead(num_classes, filters=16), augment=AUGMENT,
                          class_names=class_names)
        ft.compile(learning_rate=1e-2)
        ft.fit(train_x, train_y, epochs=epochs or 20, batch_size=8, verbose=0, seed=0)
    else:
        ft = build_model(num_classes, class_names)
        ft.fine_tune(train_x, train_y, epochs=epochs or 12, freeze_epochs=4, unfreeze=2, batch_size=8,
                     checkpoint_dir=os.path.join(workdir, "checkpoints"))
    report = ft.evaluate(test_x, test_y, report=True)
    print(report)
    predicted = ft.predict_masks(test_x)
    sizes_match = all(p.shape == m.shape for p, m in zip(predicted, test_y, strict=True))
    print(f"predicted {len(predicted)} masks at their images' own sizes: {sizes_match}")
    path = os.path.join(workdir, "segmentation.keras")
    ft.save(path)
    reloaded = fk.load(path).predict_masks(test_x[:2])
    same = all(np.array_equal(a, b) for a, b in zip(reloaded, predicted[:2], strict=True))
    print(f"reloaded model predicts the same masks: {same}")
    if plot:
        from PIL import Image

        image = np.asarray(Image.open(test_x[0]).convert("RGB"))
        fk.plot_masks(image, test_y[0], plot, prediction=predicted[0],
                      class_names=class_names or None)
        print(f"wrote {plot}")
    return sizes_match and same


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", help="folder of images")
    parser.add_argument("--masks", help="folder of PNG masks named like the images")
    parser.add_argument("--num-classes", type=int, help="classes, background included")
    parser.add_argument("--class-names", help="comma-separated names by class id")
    parser.add_argument("--smoke", action="store_true", help="offline run on generated shapes")
    parser.add_argument("--plot", help="write a picture of one test image, its mask and prediction")
    parser.add_argument("--epochs", type=int, help="epochs (default: 20 smoke, 12 real)")
    args = parser.parse_args(argv)
    if args.smoke == bool(args.images or args.masks):
        parser.error("pass --smoke, or --images and --masks (not both)")
    check_extras(EXTRAS if args.plot else {}, __file__)
    names = args.class_names.split(",") if args.class_names else None
    with tempfile.TemporaryDirectory() as workdir:
        if args.smoke:
            images_dir, masks_dir = write_folders(workdir, *shapes(40))
            ok = run(images_dir, masks_dir, 3, ["background", "square", "disc"], True,
                     args.plot, workdir, args.epochs)
            print("smoke test passed" if ok else "smoke test FAILED")
            return 0 if ok else 1
        if not (args.images and args.masks and args.num_classes):
            parser.error("--images, --masks and --num-classes are all needed")
        run(args.images, args.masks, args.num_classes, names, False, args.plot, workdir,
            args.epochs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
