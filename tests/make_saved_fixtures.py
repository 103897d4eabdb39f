"""Writes the saved-model fixtures that `tests/test_saved_compat.py` loads.

One tiny model per family and kind is built with a fixed seed, fitted for one
epoch on tiny generated data (so that class names, item vocabularies, the
tokenizer and the optimizer state are part of the file), saved with
`ft.save(NAME.keras)`, and its raw inputs, `ft.predict` outputs and task-method
answers are written to `NAME.npz`:

- `in__<input>`: the raw inputs (`in__x` for `predict`), or
  `in__<input>__<column>` for a DataFrame of interactions;
- `outputs`: `ft.predict(x, **predict_kwargs)`;
- `meta`: JSON `{"family", "inputs": {input: "array" | "texts" | "dataframe"},
  "predict_kwargs", "calls": [{"method", "input", "kwargs"}], "answers": [...]}`,
  one answer (JSON-converted) per call.

The fixtures are made with the finetunekit on the path and the tests of the
same tree (the builders of its `tests/harness.py`, `tests/conftest.py`, ...):

    cd /work/wt-old && PYTHONPATH=src python /work/main/tests/make_saved_fixtures.py OUT_DIR

(`git rev-parse HEAD` of that tree goes into `OUT_DIR/manifest.json`.)
"""

import json
import os
import pathlib
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

N = 8  # training examples
SEED = 0


def _tree_root():
    """The repository of the finetunekit in use: its tests hold the builders."""
    import finetunekit

    root = pathlib.Path(finetunekit.__file__).resolve().parents[2]
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return root


def to_json(value):
    """Task-method answers as plain JSON values (arrays -> lists, numpy scalars -> Python)."""
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_json(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode()
    return value


# --------------------------------------------------------------------- inputs
def _images(rng, n=N, size=32):
    return rng.integers(0, 255, (n, size, size, 3)).astype("uint8")


def _tone_clips(n=N, seconds=0.2):
    from tests.audio_fixtures import tone

    return np.stack([tone(300 if i % 2 == 0 else 2000, seconds=seconds, seed=i) for i in range(n)])


def _application(name, **options):
    """A `keras.applications` model with random weights at 32 px (narrowed by `alpha`)."""
    import keras

    return getattr(keras.applications, name)(
        include_top=False, weights=None, input_shape=(32, 32, 3), **options
    )


def _interactions(rng):
    import pandas as pd

    from tests.harness import ITEMS, USERS

    users = rng.choice(USERS, 2 * N)
    items = rng.choice(ITEMS, 2 * N)
    return pd.DataFrame({"user": users, "item": items})


# ---------------------------------------------------------------------- cases
# Each case returns a dict:
#   ft: the FineTuner; fit: (x, y) or (x,) with fit_kwargs; inputs: {"x": raw inputs, ...};
#   predict_kwargs; compile: FineTuner.compile arguments (default: fit compiles);
#   calls: [(method, input name, kwargs)].
def case_image_cnn_classification(rng):
    import finetunekit as fk
    from tests.conftest import tiny_cnn

    ft = fk.FineTuner(
        tiny_cnn((32, 32, 3)), head=fk.ClassificationHead(2, pooling="max", hidden_units=(4,), dropout=0.1),
        preprocessing="zero_one", augment={"rotation_range": 15, "horizontal_flip": True},
    )
    x = _images(rng)
    y = np.array(["cat", "dog"])[rng.integers(0, 2, N)]
    return dict(family="classification", ft=ft, fit=(x, y), inputs={"x": x[:4]},
                calls=[("predict_labels", "x", {})])


def case_image_mobilenetv3_classification(rng):
    import finetunekit as fk

    # MobileNetV2(alpha=0.35) keeps its 1280-wide last layer (a 2.3 MB file); this is 1.4 MB.
    ft = fk.FineTuner(
        _application("MobileNetV3Small", alpha=0.75, minimalistic=True),
        head=fk.ClassificationHead(3), architecture="MobileNetV3Small", weights=None,
    )
    x = _images(rng)
    y = np.array(["ant", "bee", "fly"])[rng.integers(0, 3, N)]
    return dict(family="classification", ft=ft, fit=(x, y), inputs={"x": x[:4]},
                calls=[("predict_labels", "x", {})])


def case_image_multi_label(rng):
    import finetunekit as fk
    from tests.conftest import tiny_cnn

    ft = fk.FineTuner(tiny_cnn((32, 32, 3)), head=fk.ClassificationHead(3, multi_label=True),
                      preprocessing="zero_one")
    x = _images(rng)
    names = ["red", "green", "blue"]
    y = [[names[j] for j in range(3) if (i >> j) & 1] or ["red"] for i in range(N)]
    return dict(family="classification", ft=ft, fit=(x, y), inputs={"x": x[:4]},
                calls=[("predict_labels", "x", {})])


def case_image_regression(rng):
    import finetunekit as fk
    from tests.conftest import tiny_cnn

    ft = fk.FineTuner(tiny_cnn((32, 32, 3)), head=fk.RegressionHead(units=2),
                      preprocessing="zero_one")
    x = _images(rng)
    y = rng.random((N, 2)).astype("float32")
    return dict(family="classification", ft=ft, fit=(x, y), inputs={"x": x[:4]},
                calls=[("predict_labels", "x", {})])


def case_text_classification(rng):
    import finetunekit as fk
    from tests.test_text import LABELS, TEXTS, tiny_bert

    backbone, preprocessor = tiny_bert()
    # Text augmentation, layer-wise decay (LayerDecayAdamW) and label smoothing are in the file.
    ft = fk.FineTuner(backbone=backbone, preprocessor=preprocessor, unfreeze=1, layer_decay=0.8,
                      augment={"random_deletion": 0.1},
                      head=fk.ClassificationHead(num_classes=2, pooling="cls"))
    texts = ["what a ride", "boring awful film", "good fun", "dull movie the plot"]
    return dict(family="text", ft=ft, fit=(TEXTS[:N], LABELS[:N]), inputs={"x": texts},
                compile={"label_smoothing": 0.1}, calls=[("predict_labels", "x", {})])


def case_text_ner(rng):
    import finetunekit as fk
    from tests.test_text import TEXTS, tiny_bert

    backbone, preprocessor = tiny_bert()
    ft = fk.FineTuner(backbone=backbone, preprocessor=preprocessor,
                      head=fk.TokenClassificationHead(num_tags=3))
    texts = list(TEXTS[:N])
    names = ["O", "B-X", "I-X"]
    tags = [[names[i % 3] for i, _ in enumerate(t.split())] for t in texts]
    inputs = ["what a ride", "boring awful film", "the plot is fun"]
    return dict(family="text", ft=ft, fit=(texts, tags), inputs={"x": inputs},
                calls=[("predict_labels", "x", {}), ("predict_entities", "x", {})])


def case_segmentation(rng):
    import finetunekit as fk
    from tests.conftest import tiny_cnn

    ft = fk.FineTuner(tiny_cnn((32, 32, 3)), head=fk.SegmentationHead(num_classes=3, filters=8),
                      preprocessing="zero_one")
    x = _images(rng)
    masks = rng.integers(0, 3, x.shape[:3])
    return dict(family="segmentation", ft=ft, fit=(x, masks), inputs={"x": x[:3]},
                calls=[("predict_masks", "x", {})])


def case_detection_mobilenet(rng):
    import finetunekit as fk
    from tests.harness import _boxes

    ft = fk.FineTuner(
        _application("MobileNet", alpha=0.25), architecture="MobileNet", weights=None,
        # An untrained head scores about 0.01: a low threshold keeps a few boxes to compare.
        head=fk.DetectionHead(num_classes=2, fpn_filters=8, num_head_convs=1, max_level=5,
                              confidence_threshold=0.001, max_detections=4),
    )
    x = _images(rng)
    targets = _boxes(rng, x)
    targets["labels"] = [np.array(["car", "bus"])[labels] for labels in targets["labels"]]
    return dict(family="detection", ft=ft, fit=(x, targets), inputs={"x": x[:3]},
                calls=[("predict_boxes", "x", {})])


def case_seq2seq(rng):
    import finetunekit as fk
    from tests.harness import _seq2seq_options
    from tests.test_seq2seq import pairs

    ft = fk.FineTuner(head=fk.Seq2SeqHead(max_target_length=8), **_seq2seq_options())
    sources, targets = pairs(N, seed=SEED)
    return dict(family="seq2seq", ft=ft, fit=(sources, targets), inputs={"x": sources[:3]},
                calls=[("predict_labels", "x", {}), ("predict_text", "x", {}),
                       ("predict_text", "x", {"strategy": "beam", "num_beams": 2})])


def case_image_hub_resnet_classification(rng):
    import finetunekit as fk
    from tests.harness import tiny_hub_resnet

    ft = fk.FineTuner(tiny_hub_resnet(), head=fk.ClassificationHead(2), input_shape=(32, 32, 3))
    x = _images(rng)
    y = np.array(["cat", "dog"])[rng.integers(0, 2, N)]
    return dict(family="classification", ft=ft, fit=(x, y), inputs={"x": x[:4]},
                calls=[("predict_labels", "x", {})])


def case_seq2seq_warm_start(rng):
    from tests.test_seq2seq_warm_start import copy_pairs, warm_tuner

    ft = warm_tuner()
    sources, targets = copy_pairs(N, seed=SEED)
    return dict(family="seq2seq", ft=ft, fit=(sources, targets), inputs={"x": sources[:3]},
                calls=[("predict_labels", "x", {}), ("predict_text", "x", {})])


def case_speech_classification(rng):
    import finetunekit as fk
    from tests.harness import _audio_options

    ft = fk.FineTuner(head=fk.ClassificationHead(2), **_audio_options())
    clips = _tone_clips()
    y = ["low" if i % 2 == 0 else "high" for i in range(N)]
    return dict(family="speech", ft=ft, fit=(clips, y), fit_kwargs={"sample_rate": 16000},
                inputs={"x": clips[:3]}, predict_kwargs={"sample_rate": 16000},
                calls=[("predict_labels", "x", {"sample_rate": 16000})])


def case_speech_to_text(rng):
    import finetunekit as fk
    from tests.audio_fixtures import WORDS
    from tests.harness import _audio_options

    ft = fk.FineTuner(head=fk.SpeechToTextHead(max_new_tokens=4), unfreeze="all", **_audio_options())
    clips = _tone_clips()
    y = [WORDS[i] for i in rng.integers(0, len(WORDS), N)]
    return dict(family="speech", ft=ft, fit=(clips, y), fit_kwargs={"sample_rate": 16000},
                inputs={"x": clips[:3]}, predict_kwargs={"sample_rate": 16000},
                calls=[("predict_labels", "x", {"sample_rate": 16000}),
                       ("predict_text", "x", {"sample_rate": 16000})])


def case_speech_moonshine_to_text(rng):
    import finetunekit as fk
    from tests.audio_fixtures import WORDS
    from tests.harness import _moonshine_options

    ft = fk.FineTuner(head=fk.SpeechToTextHead(max_new_tokens=4), unfreeze="all",
                      **_moonshine_options())
    clips = _tone_clips()
    y = [WORDS[i] for i in rng.integers(0, len(WORDS), N)]
    return dict(family="speech", ft=ft, fit=(clips, y), fit_kwargs={"sample_rate": 16000},
                inputs={"x": clips[:3]}, predict_kwargs={"sample_rate": 16000},
                calls=[("predict_text", "x", {"sample_rate": 16000})])


def case_recommendation_retrieval(rng):
    import finetunekit as fk
    from tests.harness import _embeddings_options

    ft = fk.FineTuner(head=fk.RetrievalHead(k=3), **_embeddings_options())
    interactions = _interactions(rng)
    return dict(family="recommendation", ft=ft, fit=(interactions, interactions["item"].to_numpy()),
                inputs={"x": interactions[:4].reset_index(drop=True),
                        "users": ["u0", "u3", "u5"]},
                calls=[("predict_labels", "x", {}),
                       ("recommend", "users", {"exclude_seen": False}),
                       ("recommend", "users", {"k": 2, "seen": "x"})])


def case_recommendation_side_features(rng):
    import finetunekit as fk
    from tests.harness import ITEMS, USERS

    def encoder(texts):  # a callable item-text encoder: its vectors are stored in the model
        return np.array([[len(t), t.count("a"), 1.0] for t in texts], "float32")

    towers = fk.backbones.Embeddings(
        users=USERS, items=ITEMS, dim=8,
        item_features={"genre": [f"genre{int(i[1:]) % 3}" for i in ITEMS]},
        user_features={"tags": {u: ["all", f"g{int(u[1:]) % 2}"] for u in USERS}},
        item_text=[f"title {'a' * i}" for i in range(len(ITEMS))], text_encoder=encoder,
    )
    ft = fk.FineTuner(backbone=towers, head=fk.RetrievalHead(k=3), unfreeze="all")
    interactions = _interactions(rng)
    return dict(family="recommendation", ft=ft, fit=(interactions,),
                inputs={"x": ["u0", "u2", "u4"]},
                calls=[("predict_labels", "x", {}), ("recommend", "x", {"exclude_seen": False})])


def case_recommendation_ranking(rng):
    import finetunekit as fk
    from tests.harness import _embeddings_options

    ft = fk.FineTuner(head=fk.RankingHead(hidden_units=(4,)), **_embeddings_options())
    interactions = _interactions(rng)
    ratings = rng.integers(1, 6, len(interactions)).astype("float32")
    return dict(family="recommendation", ft=ft, fit=(interactions, ratings),
                inputs={"x": interactions[:4].reset_index(drop=True)},
                calls=[("predict_labels", "x", {})])


def case_vector_policy(rng):
    import finetunekit as fk
    from tests.harness import _vector_options

    ft = fk.FineTuner(head=fk.ClassificationHead(num_classes=3), unfreeze="all", **_vector_options())
    states = rng.normal(size=(N, 4)).astype("float32")
    actions = rng.integers(0, 3, N)
    return dict(family="vector", ft=ft, fit=(states, actions), inputs={"x": states[:4]},
                calls=[("predict_labels", "x", {})])


CASES = {
    name[len("case_"):]: function for name, function in globals().items() if name.startswith("case_")
}


# ----------------------------------------------------------------------- main
def _input_kind(value):
    if hasattr(value, "columns"):
        return "dataframe"
    if isinstance(value, np.ndarray):
        return "array"
    return "texts"


def _store_inputs(inputs):
    arrays, kinds = {}, {}
    for name, value in inputs.items():
        kinds[name] = kind = _input_kind(value)
        if kind == "dataframe":
            for column in value.columns:
                arrays[f"in__{name}__{column}"] = value[column].to_numpy().astype(str)
        elif kind == "array":
            arrays[f"in__{name}"] = value
        else:
            arrays[f"in__{name}"] = np.asarray(list(value), dtype=str)
    return arrays, kinds


def _resolve(kwargs, inputs):
    """`{"seen": "x"}` names another input (a DataFrame of interactions)."""
    return {k: inputs[v] if k == "seen" else v for k, v in kwargs.items()}


def make(name, out_dir):
    import keras

    keras.utils.set_random_seed(SEED)
    rng = np.random.default_rng(SEED)
    case = CASES[name](rng)
    ft = case["ft"]
    keras.utils.set_random_seed(SEED)
    if "compile" in case:
        ft.compile(**case["compile"])
    ft.fit(*case["fit"], epochs=1, batch_size=4, verbose=0, **case.get("fit_kwargs", {}))
    inputs = case["inputs"]
    predict_kwargs = case.get("predict_kwargs", {})
    outputs = ft.predict(inputs["x"], verbose=0, **predict_kwargs)
    answers = [
        to_json(getattr(ft, method)(inputs[input_name], **_resolve(kwargs, inputs)))
        for method, input_name, kwargs in case["calls"]
    ]
    path = os.path.join(out_dir, f"{name}.keras")
    ft.save(path)
    arrays, kinds = _store_inputs(inputs)
    meta = {
        "family": case["family"],
        "class_names": ft.class_names,
        "inputs": kinds,
        "predict_kwargs": predict_kwargs,
        "calls": [{"method": m, "input": i, "kwargs": k} for m, i, k in case["calls"]],
        "answers": answers,
    }
    np.savez(os.path.join(out_dir, f"{name}.npz"), outputs=np.asarray(outputs),
             meta=np.array(json.dumps(meta)), **arrays)
    keras.backend.clear_session()
    return os.path.getsize(path)


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("cases", nargs="*", help=f"default: all of {', '.join(CASES)}")
    args = parser.parse_args(argv)
    root = _tree_root()
    import finetunekit

    os.makedirs(args.out_dir, exist_ok=True)
    sizes = {}
    for name in args.cases or CASES:
        sizes[name] = make(name, args.out_dir)
        print(f"{name}: {sizes[name] / 1e6:.2f} MB", flush=True)
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    import keras
    import keras_hub
    import tensorflow as tf

    manifest_path = os.path.join(args.out_dir, "manifest.json")
    manifest = {
        "commit": commit,
        "finetunekit": getattr(finetunekit, "__version__", None),
        "keras": keras.__version__,
        "keras_hub": keras_hub.__version__,
        "tensorflow": tf.__version__,
        "fixtures": sorted(p.stem for p in pathlib.Path(args.out_dir).glob("*.keras")),
    }
    with open(manifest_path, "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
