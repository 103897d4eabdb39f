"""Object detection: fine-tune a RetinaNet-style detector on a ResNet50 backbone.

Three ways to run it:

```shell
# A COCO json (file_name relative to the json's folder), a Pascal VOC folder
# (Annotations/*.xml + JPEGImages/) or a YOLO folder (images/ + labels/ + classes.txt).
python examples/detection.py --data my_coco/train.json --num-classes 3
python examples/detection.py --data VOC2012/ --num-classes 20 --epochs 12

# Offline smoke test in seconds: a generated YOLO folder of squares and discs,
# random weights, 32x32 inputs.
python examples/detection.py --smoke
```

The recipe: ImageNet ResNet50, an FPN with RetinaNet class and box subnets
(`fk.DetectionHead`), flips in the data pipeline (boxes move with the
pixels), a few head-only epochs and then the top ResNet stages unfrozen at a
lower rate (`fine_tune`). It prints COCO mAP (pycocotools), draws the boxes
found on one image with `fk.plot_boxes` and saves a model that takes raw images.

Extras (checked at start, before any training): pycocotools, for COCO mAP, and
matplotlib, for the picture of the boxes

```shell
pip install "finetunekit[detection]"
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
EXTRAS = {"pycocotools": '"finetunekit[detection]"', "matplotlib": '"finetunekit[plot]"'}


def write_shapes_yolo(folder, count=8, size=64, seed=0):
    """A YOLO folder of noisy images with squares (class 0) and discs (class 1)."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(folder, "images"))
    os.makedirs(os.path.join(folder, "labels"))
    with open(os.path.join(folder, "classes.txt"), "w") as f:
        f.write("square\ndisc\n")
    for index in range(count):
        image = Image.fromarray(rng.integers(0, 60, (size, size, 3)).astype("uint8"))
        draw, lines = ImageDraw.Draw(image), []
        for shape in range(index % 2 + 1):
            side = int(rng.integers(14, 26))
            x, y = (int(v) for v in rng.integers(0, size - side, 2))
            box = [x, y, x + side, y + side]
            (draw.rectangle if shape == 0 else draw.ellipse)(box, fill=(230, 200, 40))
            cx, cy = (x + side / 2) / size, (y + side / 2) / size
            lines.append(f"{shape} {cx:.4f} {cy:.4f} {side / size:.4f} {side / size:.4f}")
        image.save(os.path.join(folder, "images", f"{index:03d}.png"))
        with open(os.path.join(folder, "labels", f"{index:03d}.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")


def build_detector(num_classes, smoke):
    import finetunekit as fk

    if smoke:
        head = fk.DetectionHead(num_classes, fpn_filters=8, num_head_convs=1, max_level=5,
                                anchor_size=2.0)
        return fk.FineTuner(backbone="mobilenet", head=head, weights=None,
                            input_shape=(32, 32, 3), augment={"horizontal_flip": True})
    return fk.FineTuner(backbone="resnet50", head=fk.DetectionHead(num_classes),
                        input_shape=(512, 512, 3), augment={"horizontal_flip": True})


def run(data, num_classes, epochs, out, smoke):
    import finetunekit as fk

    det = build_detector(num_classes, smoke)
    det.fine_tune(data, epochs=epochs, freeze_epochs=max(1, epochs // 2), unfreeze=1 if smoke else 2,
                  batch_size=4 if smoke else 8, verbose=0 if smoke else "auto")
    report = det.evaluate(data, report=True, batch_size=4)
    print(report)
    paths, _ = fk.data.read_detection_data(data, None)
    found = det.predict_boxes(paths[:1])
    print(f"{paths[0]}: {len(found[0]['boxes'])} boxes, labels {found[0]['labels'][:5].tolist()}")
    picture = fk.plot_boxes(paths[0], found[0], os.path.join(out, "boxes.png"), min_score=0.3)
    model_path = os.path.join(out, "detector.keras")
    det.save(model_path)
    reloaded = fk.load(model_path).predict_boxes(paths[:1])
    assert np.allclose(reloaded[0]["scores"], found[0]["scores"], atol=1e-4)
    print(f"saved {model_path} and {picture}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="COCO json, Pascal VOC folder or YOLO folder")
    parser.add_argument("--num-classes", type=int)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--out", default="detection_out")
    parser.add_argument("--smoke", action="store_true", help="offline run on generated shapes")
    args = parser.parse_args(argv)
    if args.smoke == bool(args.data) or (args.data and not args.num_classes):
        parser.error("pass --smoke, or --data with --num-classes")
    check_extras(EXTRAS, __file__)
    if args.smoke:
        with tempfile.TemporaryDirectory() as folder:
            write_shapes_yolo(os.path.join(folder, "shapes"))
            run(os.path.join(folder, "shapes"), 2, 2, folder, smoke=True)
        print("smoke test passed")
        return
    os.makedirs(args.out, exist_ok=True)
    run(args.data, args.num_classes, args.epochs, args.out, smoke=False)


if __name__ == "__main__":
    sys.exit(main())
