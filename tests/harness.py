"""The shared test harness: every registered backbone kind x every head it accepts, same checks.

A backbone kind (`fk.backbones.register_backbone_kind`) or a head (a
`fk.heads.Head` subclass) is added to the harness by adding one entry to
`BACKBONE_CASES` or `HEAD_CASES`; `tests/test_harness.py` fails for a kind or
a head that has none, for a task method without a `TASK_CALLS` entry, and for
a kind that accepts a head the matrix does not run on it. Each case is tiny
(random weights, 32 pixel images, a 2-layer BERT with hidden size 8).

`check_task` runs, for every (kind, head) pair of `matrix()`: `fit` from
arrays and from a `tf.data.Dataset` of the same data, `predict` on arrays and
on a dataset of the same inputs (equal), `predict_labels`, every task method
of the head on raw inputs, `fk.report` and `evaluate(report=True)` (equal),
`export(format="saved_model")` served on the raw inputs (equal to `predict`
or to the task methods' answers; each kind and each head by default, every pair with
`-m slow`: `export_pairs`), config round trip, save / `fk.load`
(equal predictions), freezing and `fine_tune` from a frozen model. Where a
family refuses a form with a clear error (a dataset of text pairs, of audio
paths for speech to text, of texts for token classification; exporting a
text encoder), the check asserts that message instead (`BackboneCase.refuses`,
`HeadCase.refuses`). `SLOW` pairs run with `-m slow` only.
"""

import dataclasses

import numpy as np
import pytest

from tests.test_text import TEXTS, tiny_bert

N = 8


@dataclasses.dataclass
class BackboneCase:
    """How to build a tiny backbone of one kind and data for it."""

    modality: str
    options: callable  # () -> FineTuner keyword arguments (backbone=..., ...)
    inputs: callable  # (rng) -> N raw inputs
    default_head: str = "ClassificationHead"  # the head of the kind-only checks
    served: callable = None  # (ft, x) -> {name: tensor}: the raw inputs of the serving signature
    # Documented refusals of the kind: {"dataset": message, "export": message} (regexes).
    refuses: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class HeadCase:
    """How to build a head and targets for it."""

    make: callable  # () -> head
    targets: callable  # (rng, inputs) -> N targets
    modalities: tuple = ("image", "text")
    backbones: tuple = None  # backbone cases it runs on (None: every case of its modalities)
    served: callable = None  # (ft, served outputs, expected): asserts they equal Python's answers
    # `fine_tune` arguments: one head-only epoch; a head without weights trains a block instead.
    fine_tune: dict = dataclasses.field(default_factory=lambda: {"epochs": 1, "freeze_epochs": 1})
    # Documented refusals of the head: {"dataset" or "fit_dataset": message} (a regex).
    refuses: dict = dataclasses.field(default_factory=dict)
    options: dict = dataclasses.field(default_factory=dict)  # more FineTuner arguments


def _images(rng):
    return rng.integers(0, 255, (N, 32, 32, 3)).astype("uint8")


def _texts(rng):
    return list(TEXTS[:N])


USERS = [f"u{i}" for i in range(6)]
ITEMS = [f"i{i}" for i in range(10)]


def _interactions(rng):
    import pandas as pd

    return pd.DataFrame({"user": rng.choice(USERS, N), "item": rng.choice(ITEMS, N)})


def _vectors(rng):
    return rng.normal(size=(N, 4)).astype("float32")


def _vector_options():
    import keras

    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(8, activation="relu", name="hidden")(inputs)
    return {"backbone": keras.Model(inputs, keras.layers.Dense(8, name="top")(hidden))}


def _embeddings_options():
    import finetunekit as fk

    return {"backbone": fk.backbones.Embeddings(users=USERS, items=ITEMS, dim=8),
            "unfreeze": "all"}


def _audio(rng):
    import tempfile

    from tests.audio_fixtures import tone_files

    return tone_files(tempfile.mkdtemp(prefix="fk_audio_"), N, vary=False)[0]


def _audio_options():
    from tests.audio_fixtures import tiny_tokenizer, tiny_whisper

    return {"backbone": tiny_whisper(), "preprocessor": tiny_tokenizer()}


def _moonshine_options():
    from tests.audio_fixtures import tiny_moonshine, tiny_moonshine_tokenizer

    return {"backbone": tiny_moonshine(), "preprocessor": tiny_moonshine_tokenizer()}


def _text_options():
    backbone, preprocessor = tiny_bert()
    return {"backbone": backbone, "preprocessor": preprocessor}


def tiny_hub_resnet():
    """A keras-hub ResNetBackbone (a FeaturePyramidBackbone) with random weights, 2 small stages."""
    import keras_hub

    return keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 8],
        stackwise_num_blocks=[1, 1], stackwise_num_strides=[1, 2], block_type="basic_block",
    )


def _seq2seq_options():
    from tests.test_seq2seq import tiny_bart

    backbone, preprocessor = tiny_bart()
    # A Seq2SeqHead has no weights of its own: the backbone trains.
    return {"backbone": backbone, "preprocessor": preprocessor, "unfreeze": "all"}


def _causal_lm_options():
    from tests.causal_lm_fixtures import tiny_llama

    return {"backbone": tiny_llama(sequence_length=48), "lora_rank": 2}


def _chat_records(rng):
    from tests.causal_lm_fixtures import FACTS

    return [dict(FACTS[i % len(FACTS)]) for i in rng.permutation(N)]


def _served_prompts(ft, x):
    import tensorflow as tf

    return {"prompts": tf.constant([record["prompt"] for record in x])}


def _sources(rng):
    from tests.test_seq2seq import pairs

    return pairs(N, seed=int(rng.integers(1000)))[0]


def tiny_pyramid_cnn(size=32):
    """`tiny_cnn` (BatchNorm included) with two more stride-2 stages: P2 and P3 for spatial heads."""
    import keras

    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="block1_conv")(inputs)
    x = keras.layers.BatchNormalization(name="block1_bn")(x)
    x = keras.layers.ReLU(name="block1_relu")(x)
    for block, filters in ((2, 8), (3, 8), (4, 8)):
        x = keras.layers.Conv2D(
            filters, 3, strides=2, padding="same", activation="relu", name=f"block{block}_conv"
        )(x)
    return keras.Model(inputs, x, name="tiny_pyramid_cnn")


def _served_images(ft, x):
    import tensorflow as tf

    return {"images": tf.constant(x, tf.float32)}  # raw 0-255 values, as documented


def _served_vectors(ft, x):
    return {"states": x}


def _served_ids(ft, x):
    import tensorflow as tf

    return {name: tf.constant(x[name].to_numpy().astype(str)) for name in ft.backbone_kind.input_names}


def _served_audio(ft, paths):
    """One batch as docs/speech.md serves it: clips zero-padded to the longest, lengths, rates."""
    from finetunekit.families.speech.readers import read_audio

    clips = [read_audio(path) for path in paths]
    longest = max(len(clip) for clip, _ in clips)
    audio = np.zeros((len(clips), longest, 1), "float32")
    for index, (clip, _) in enumerate(clips):
        audio[index, : len(clip)] = clip[:, :1]
    return {
        "audio": audio,
        "audio_length": np.array([len(clip) for clip, _ in clips], "int32"),
        "sample_rate": np.array([rate for _, rate in clips], "int32"),
    }


def _served_texts(ft, x):
    import tensorflow as tf

    return {"texts": tf.constant(list(x))}


BACKBONE_CASES = {
    "applications": BackboneCase(
        "image",
        lambda: {"backbone": "MobileNet", "weights": None, "input_shape": (32, 32, 3)},
        _images, served=_served_images,
    ),
    "keras_model": BackboneCase(
        "image", lambda: {"backbone": tiny_pyramid_cnn(), "preprocessing": "zero_one"}, _images,
        served=_served_images,
    ),
    "text_encoder": BackboneCase(
        "text", _text_options, _texts,
        refuses={"export": "A text backbone cannot be exported as a SavedModel yet"},
    ),
    "keras_hub_image": BackboneCase(
        "image", lambda: {"backbone": tiny_hub_resnet(), "input_shape": (32, 32, 3)}, _images,
        served=_served_images,
    ),
    "embeddings": BackboneCase("ids", _embeddings_options, _interactions, served=_served_ids),
    "vector_model": BackboneCase("vector", _vector_options, _vectors, served=_served_vectors),
    "audio": BackboneCase("audio", _audio_options, _audio, served=_served_audio),
    # docs/seq2seq.md, "Not there yet": tf.data datasets are refused for text pairs.
    "seq2seq": BackboneCase(
        "text_pairs", _seq2seq_options, _sources, "Seq2SeqHead", served=_served_texts,
        refuses={"dataset": "tf.data datasets and TFDS are not supported yet"},
    ),
    "audio_moonshine": BackboneCase("audio", _moonshine_options, _audio, served=_served_audio),
    # docs/instruction_tuning.md: the SavedModel takes prompt strings and returns greedy answers.
    "causal_lm": BackboneCase(
        "chat", _causal_lm_options, _chat_records, "InstructionHead", served=_served_prompts,
    ),
}


def _classification():
    import finetunekit as fk

    return fk.ClassificationHead(2, pooling="max", hidden_units=(4,), dropout=0.1)


def _multi_label():
    import finetunekit as fk

    return fk.ClassificationHead(3, multi_label=True)


def _regression():
    import finetunekit as fk

    return fk.RegressionHead(units=2)


def _token_classification():
    import finetunekit as fk

    return fk.TokenClassificationHead(num_tags=3)


def _segmentation():
    import finetunekit as fk

    return fk.SegmentationHead(num_classes=3, filters=8)


def _masks(rng, images):
    return rng.integers(0, 3, images.shape[:3])


def _retrieval():
    import finetunekit as fk

    return fk.RetrievalHead(k=3)


def _ranking():
    import finetunekit as fk

    return fk.RankingHead(hidden_units=(4,))


def _speech_to_text():
    import finetunekit as fk

    return fk.SpeechToTextHead(max_new_tokens=4)


def _transcripts(rng, x):
    from tests.audio_fixtures import WORDS

    return [WORDS[i] for i in rng.integers(0, len(WORDS), N)]


def _seq2seq():
    import finetunekit as fk

    return fk.Seq2SeqHead(max_target_length=8)


def _warm_start():
    import finetunekit as fk

    return fk.Seq2SeqHead(max_target_length=8, decoder="warm_start")


def _reversed(rng, sources):
    return [" ".join(s.split()[::-1]) for s in sources]


def _word_tags(rng, texts):
    names = ["O", "B-X", "I-X"]
    return [[names[i % 3] for i, _ in enumerate(t.split())] for t in texts]


def _detection():
    import finetunekit as fk

    # Every detection is kept (confidence_threshold=0), so that served and predicted boxes compare.
    return fk.DetectionHead(
        num_classes=2, fpn_filters=8, num_head_convs=1, max_level=5, confidence_threshold=0.0,
        max_detections=6,
    )


def _boxes(rng, images):
    """Per image 0-2 boxes inside its 32x32 image (the second image has none)."""
    boxes, labels = [], []
    for index in range(len(images)):
        count = 0 if index == 1 else 1 + index % 2
        corner = rng.uniform(0, 14, (count, 2))
        boxes.append(np.concatenate([corner, corner + rng.uniform(8, 18, (count, 2))], axis=1))
        labels.append(rng.integers(0, 2, count))
    return {"boxes": boxes, "labels": labels}


def same_outputs(ft, served, expected):
    """A head served as computed: the model's outputs (probabilities, values, ratings)."""
    (value,) = served.values()
    np.testing.assert_allclose(np.asarray(value), expected["predict"], atol=1e-5)


def _same_masks(ft, served, expected):
    np.testing.assert_array_equal(np.asarray(served["masks"]), expected["predict_masks"])


def _same_boxes(ft, served, expected):
    """Boxes after NMS in the graph equal `predict_boxes` (tests/test_spatial_serving.py)."""
    for index, found in enumerate(expected["predict_boxes"]):
        count = int(served["num_detections"][index])
        assert count == len(found["boxes"])
        np.testing.assert_allclose(np.asarray(served["boxes"])[index, :count], found["boxes"], atol=1e-3)
        np.testing.assert_allclose(np.asarray(served["scores"])[index, :count], found["scores"], atol=1e-4)
        labels = np.asarray(served["labels"])[index, :count]
        names = np.asarray(ft.class_names)[labels] if ft.class_names else labels
        np.testing.assert_array_equal(names, found["labels"])
        assert (np.asarray(served["boxes"])[index, count:] == -1).all()


def _same_items(ft, served, expected):
    """The top-k item ids of `predict_labels` (nothing excluded) and their scores."""
    items = [[item.decode() for item in row] for row in np.asarray(served["items"])]
    assert items == expected["predict_labels"]
    top = -np.sort(-expected["predict"], axis=-1)[:, : len(items[0])]
    np.testing.assert_allclose(np.asarray(served["scores"]), top, atol=1e-5)


def _same_text(ft, served, expected):
    """Greedy generation in the graph writes the transcripts / texts of `predict_text`."""
    texts = [text.decode("utf-8").strip() for text in np.asarray(served["text"])]
    assert texts == expected["predict_text"]


def _instruction():
    import finetunekit as fk

    head = fk.InstructionHead(train_on="completion")
    head.serving_max_new_tokens = 2  # as TASK_CALLS["generate"]
    return head


def _same_answers(ft, served, expected):
    """The SavedModel's greedy answers to the prompts are `generate`'s."""
    assert [text.decode("utf-8") for text in np.asarray(served["text"])] == expected["generate"]


def _no_targets(rng, records):
    return None  # the records carry their responses


#: `fine_tune` of a head without weights (the backbone's decoder trains): one unfrozen block.
TRAIN_A_BLOCK = {"epochs": 1, "freeze_epochs": 0, "unfreeze": 1}

HEAD_CASES = {
    "ClassificationHead": HeadCase(
        _classification, lambda rng, x: rng.integers(0, 2, N),
        ("image", "text", "ids", "vector", "audio"), served=same_outputs,
    ),
    "ClassificationHead/multi_label": HeadCase(
        _multi_label, lambda rng, x: (rng.random((N, 3)) > 0.5).astype("float32"),
        ("image", "text", "ids", "vector", "audio"), served=same_outputs,
    ),
    "RegressionHead": HeadCase(
        _regression, lambda rng, x: rng.random((N, 2)).astype("float32"),
        ("image", "text", "ids", "vector", "audio"), served=same_outputs,
    ),
    # Tags are aligned to the sub-words of each word by the word pipeline: a dataset of texts
    # cannot carry one tag per word (as for TFDS, docs/text.md).
    "TokenClassificationHead": HeadCase(
        _token_classification, _word_tags, ("text",),
        refuses={"dataset": "tf.data.Dataset of texts is not supported for token classification"},
    ),
    "SegmentationHead": HeadCase(_segmentation, _masks, ("image",), served=_same_masks),
    "DetectionHead": HeadCase(_detection, _boxes, ("image",), served=_same_boxes),
    "RetrievalHead": HeadCase(
        _retrieval, lambda rng, x: x["item"].to_numpy(), ("ids",), served=_same_items
    ),
    "RankingHead": HeadCase(
        _ranking, lambda rng, x: rng.integers(1, 6, N).astype("float32"), ("ids",),
        served=same_outputs,
    ),
    # The audio pipeline adds the decoder's prompt (and transcript tokens) to lists of clips,
    # not to a dataset of WAV paths (docs/speech.md: datasets of paths carry labels).
    "SpeechToTextHead": HeadCase(
        _speech_to_text, _transcripts, ("audio",), served=_same_text, fine_tune=TRAIN_A_BLOCK,
        refuses={"dataset": "A dataset of audio paths is not supported for speech to text"},
    ),
    "Seq2SeqHead": HeadCase(
        _seq2seq, _reversed, ("text_pairs",), served=_same_text, fine_tune=TRAIN_A_BLOCK
    ),
    "InstructionHead": HeadCase(
        _instruction, _no_targets, ("chat",), served=_same_answers,
    ),
    # A BERT-family text encoder becomes an encoder-decoder (a seq2seq kind) for this head.
    "Seq2SeqHead/warm_start": HeadCase(
        _warm_start, _reversed, ("text",), served=_same_text, fine_tune=TRAIN_A_BLOCK,
        options={"unfreeze": "all"},
    ),
}


def plugin_cases(root=None):
    """`{head class name: HeadCase}` of the plugin families under `tests/plugins/`.

    A plugin family is a folder with a `plugin.py` (its one registration line)
    and a `case.py` that defines `CASE`; importing the plugin registers the
    family, so the harness runs its heads like the built-in ones.
    """
    import importlib
    import pathlib

    root = pathlib.Path(root or pathlib.Path(__file__).parent / "plugins")
    cases = {}
    for folder in sorted(p for p in root.iterdir() if (p / "case.py").exists()):
        importlib.import_module(f"tests.plugins.{folder.name}.plugin")
        case = importlib.import_module(f"tests.plugins.{folder.name}.case").CASE
        cases[type(case.make()).__name__] = case
    return cases


HEAD_CASES.update(plugin_cases())


def matrix():
    """`(backbone case name, head case name)` pairs that fit together."""
    return [
        (kind, head)
        for kind, backbone in BACKBONE_CASES.items()
        for head, case in HEAD_CASES.items()
        if backbone.modality in case.modalities
        and (case.backbones is None or kind in case.backbones)
    ]


#: Heavy combinations behind `-m slow` (the default run, `-m 'not slow'`, leaves them out) to
#: keep the default harness under 4 minutes on 2 cores: 25-50 CPU seconds each (MobileNet's
#: detector exports with NMS; every text call traces the tokenizer; a warm start exports a
#: generation loop). Each kind and head still runs by default: detection on keras_model and
#: keras_hub_image, the text kind with ClassificationHead and TokenClassificationHead (the
#: pooled heads on every other kind), warm starts in tests/test_seq2seq_warm_start.py.
SLOW = {
    ("applications", "DetectionHead"),
    ("text_encoder", "ClassificationHead/multi_label"),
    ("text_encoder", "RegressionHead"),
    ("text_encoder", "Seq2SeqHead/warm_start"),
    # Pooled heads on the audio and applications kinds: the same pooled features as their
    # ClassificationHead runs; the multi-label and regression heads run on four other kinds.
    ("audio", "ClassificationHead/multi_label"),
    ("audio", "RegressionHead"),
    ("audio_moonshine", "ClassificationHead/multi_label"),
    ("audio_moonshine", "RegressionHead"),
    ("applications", "ClassificationHead/multi_label"),
    ("applications", "RegressionHead"),
}


def matrix_params():
    """`matrix()` as pytest parameters, the `SLOW` pairs marked slow."""
    return [
        pytest.param(kind, head, marks=[pytest.mark.slow] if (kind, head) in SLOW else [])
        for kind, head in matrix()
    ]


def export_pairs():
    """The pairs whose SavedModel export is served in the default run.

    Exporting traces the whole serving graph (a generation loop for the
    generative heads) and costs more than the rest of `check_task`. What a
    served model takes comes from the kind and what it returns from the head,
    so the default run serves each kind with its default head and each head on
    the first kind of the matrix that runs it (by default); `-m slow` serves
    every other pair (`test_harness.test_export`).
    """
    pairs, heads = set(), set()
    for kind, head in matrix():
        if (kind, head) in SLOW:
            continue
        if head == BACKBONE_CASES[kind].default_head or head not in heads:
            pairs.add((kind, head))
            heads.add(head)
    return pairs


def build(kind, head_case, **options):
    """A FineTuner of the named backbone case with a fresh head of `head_case`."""
    import finetunekit as fk

    options = {**BACKBONE_CASES[kind].options(), **head_case.options, **options}
    return fk.FineTuner(head=head_case.make(), **options)


def data(kind, head_case, seed=0):
    rng = np.random.default_rng(seed)
    x = BACKBONE_CASES[kind].inputs(rng)
    return x, head_case.targets(rng, x)


def raw_inputs(x):
    """Raw inputs as `tf.data` slices them: a DataFrame of interactions becomes named columns."""
    if hasattr(x, "columns"):
        return {column: x[column].to_numpy().astype(str) for column in x.columns}
    if isinstance(x, list) and x and isinstance(x[0], dict):  # records: named string columns
        return {key: [record[key] for record in x] for key in x[0]}
    return x  # an array (images, vectors) or a list of strings (texts, paths, sources)


def _box_rows(y):
    """`(n, k, 5)` rows `x1, y1, x2, y2, class` per image, padded with -1 (a detector's model `y`)."""
    most = max([len(labels) for labels in y["labels"]] + [1])
    rows = np.full((len(y["labels"]), most, 5), -1.0, "float32")
    for index, (boxes, labels) in enumerate(zip(y["boxes"], y["labels"], strict=True)):
        rows[index, : len(labels), :4] = boxes
        rows[index, : len(labels), 4] = labels
    return rows


def as_dataset(ft, x, y, batch_size=4):
    """A batched `tf.data.Dataset` of `(x, y)` as a user writes one for the head.

    Per example targets are encoded by the head (class ids, item positions);
    spatial ones are what the model trains on at its input size (class-id
    masks, `_box_rows`); word tags, transcripts and target texts stay as
    they are (ragged tags, strings).
    """
    import tensorflow as tf

    layout = ft.head.target_layout
    if layout == "conversation":  # unbatched record dicts; the pipeline batches them
        return tf.data.Dataset.from_tensor_slices({key: [r[key] for r in x] for key in x[0]})
    if layout == "example":
        y = ft.head.encode_targets(y, ft.class_names)[0]
    elif layout == "spatial":
        y = _box_rows(y) if isinstance(y, dict) else np.asarray(y, "int32")
    elif layout == "token":
        y = tf.ragged.constant(y)
    return tf.data.Dataset.from_tensor_slices((raw_inputs(x), y)).batch(batch_size)


def _per_input(name):
    def call(ft, x, y, expected=None):
        answer = getattr(ft, name)(x)
        assert len(answer) == len(x), f"{name}: {len(answer)} answers for {len(x)} inputs"
        return answer

    return call


def _predict_masks(ft, x, y, expected):
    masks = _per_input("predict_masks")(ft, x, y)
    assert masks.shape == x.shape[:3] and masks.min() >= 0
    assert masks.max() < ft.head.num_classes
    return masks


def _predict_boxes(ft, x, y, expected):
    found = _per_input("predict_boxes")(ft, x, y)
    for result in found:
        count = len(result["scores"])
        assert result["boxes"].shape == (count, 4) and len(result["labels"]) == count
        assert count <= ft.head.nms_options["max_detections"]
    return found


def _predict_entities(ft, x, y, expected):
    """Entity spans per text: those of the tags `predict_labels` gives its words."""
    from finetunekit.core.data.text_readers import as_words
    from finetunekit.families.text.ner import entity_spans

    spans = _per_input("predict_entities")(ft, x, y)
    tags = expected["predict_labels"]
    assert spans == [entity_spans(as_words(text), row) for text, row in zip(x, tags, strict=True)]
    return spans


def _evaluate_entities(ft, x, y, expected):
    from finetunekit.families.text.ner import entity_scores

    scores = ft.evaluate_entities(x, y)
    assert scores == entity_scores(y, expected["predict_labels"])
    assert set(scores) == {"precision", "recall", "f1"}
    assert all(0.0 <= value <= 1.0 for value in scores.values())
    return scores


def _predict_text(ft, x, y, expected):
    texts = _per_input("predict_text")(ft, x, y)
    assert all(isinstance(text, str) for text in texts)
    return texts


def _recommend(ft, x, y, expected):
    """Top-k unseen items per row; with nothing excluded, the top k of `predict_labels`."""
    found = _per_input("recommend")(ft, x, y)
    items = ft.class_names
    for user, row in zip(x["user"], found, strict=True):
        seen = {items[i] for i in ft.head.seen.get(user, ())}
        assert len(row) <= ft.head.k and set(row) <= set(items) and not set(row) & seen
    assert ft.recommend(x, exclude_seen=False) == expected["predict_labels"]
    return found


def _evaluate_ranking(ft, x, y, expected):
    import finetunekit as fk

    report = ft.evaluate_ranking(x)
    assert isinstance(report, fk.Report) and report.num_examples == len(x)
    assert set(report.metrics) == {f"hr@{ft.head.k}", f"ndcg@{ft.head.k}", "mrr"}
    assert all(0.0 <= value <= 1.0 for value in report.metrics.values())
    return report


#: How the harness calls each task method (`head.task_methods`) and checks its answer, as
#: `call(ft, x, y, expected)` (`expected`: the `predict` outputs and `predict_labels` answers):
#: `predict_*` and `recommend` give one answer per raw input, `evaluate_*` one set of scores.
TASK_CALLS = {
    "predict_masks": _predict_masks,
    "predict_boxes": _predict_boxes,
    "predict_entities": _predict_entities,
    "evaluate_entities": _evaluate_entities,
    "predict_text": _predict_text,
    "generate": lambda ft, x, y, expected: ft.generate(
        [r["prompt"] for r in x], max_new_tokens=2
    ),
    "chat": lambda ft, x, y, expected: [
        ft.chat([{"role": "user", "content": r["prompt"]}], max_new_tokens=2) for r in x
    ],
    "recommend": _recommend,
    "evaluate_ranking": _evaluate_ranking,
}


def check_fit_on_dataset(ft, x, y, refusal=None):
    """`fit` on a `tf.data.Dataset` of the same data (or the documented refusal)."""
    dataset = as_dataset(ft, x, y)
    if refusal is not None:
        with pytest.raises(ValueError, match=refusal):
            ft.fit(dataset, epochs=1, verbose=0)
        return
    history = ft.fit(dataset, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


def check_predict_on_dataset(ft, x, outputs, refusal=None):
    """`predict` on a batched dataset of the raw inputs equals `predict` on the arrays."""
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices(raw_inputs(x))
    if ft.head.target_layout != "conversation":  # records stay unbatched: the pipeline pads them
        dataset = dataset.batch(4)
    if refusal is not None:
        with pytest.raises(ValueError, match=refusal):
            ft.predict(dataset, verbose=0)
        return
    predicted = ft.predict(dataset, verbose=0)
    assert isinstance(predicted, np.ndarray) and predicted.dtype == np.float32
    np.testing.assert_allclose(predicted, outputs, atol=1e-5)


def check_report(ft, x, y):
    """`fk.report` gives the head's `fk.Report`, and `evaluate(report=True)` the same scores.

    A head with neither `report` nor `make_report` gives the documented error.
    """
    import finetunekit as fk
    from finetunekit.core.head import Head

    head = type(ft.head)
    if head.report is Head.report and head.make_report is Head.make_report:
        with pytest.raises(ValueError, match="has no report; use FineTuner.evaluate instead"):
            fk.report(ft, x, y)
        return None
    report = fk.report(ft, x, y)
    assert isinstance(report, fk.Report) and report.metrics
    assert report.num_examples == len(x)
    again = ft.evaluate(x, y, report=True)
    assert isinstance(again, fk.Report) and list(again.metrics) == list(report.metrics)
    np.testing.assert_allclose(
        [again.metrics[k] for k in report.metrics], [report.metrics[k] for k in report.metrics],
        atol=1e-6, equal_nan=True,
    )
    return report


def check_export(ft, x, tmp_path, expected, served_inputs, check_served, refusal=None):
    """The SavedModel's serving signature on the raw inputs returns what Python predicts."""
    import tensorflow as tf

    folder = str(tmp_path / "served")
    if refusal is not None:
        with pytest.raises(ValueError, match=refusal):
            ft.export(folder, format="saved_model")
        return
    served = tf.saved_model.load(ft.export(folder, format="saved_model"))  # it owns the variables
    outputs = served.signatures["serving_default"](**served_inputs(ft, x))
    check_served(ft, outputs, expected)


def check_fine_tune(ft, x, y, options, refusal=None):
    """`fine_tune` runs its stages from a frozen model, and trains (or the documented refusal)."""
    if refusal is not None:
        with pytest.raises(ValueError, match=refusal):
            ft.fine_tune(x, y, batch_size=4, verbose=0, **options)
        return
    before = [np.array(w) for w in ft.get_weights()]
    history = ft.fine_tune(x, y, batch_size=4, verbose=0, **options)
    assert len(history.history["loss"]) == options["epochs"]
    assert np.isfinite(history.history["loss"]).all()
    assert any(not np.array_equal(a, np.array(b)) for a, b in zip(before, ft.get_weights()))


def check_task(ft, x, y, tmp_path, head_case=None, export=True):
    """The shared checks of one FineTuner (see the module docstring).

    Args:
        ft: a `FineTuner` on a backbone kind of `BACKBONE_CASES`.
        x, y: raw inputs and targets (`data`).
        tmp_path: a folder for saved and exported models.
        head_case: the `HeadCase` of `ft.head` (how to check what it serves, refusals,
            `fine_tune` arguments), or None for a head outside `HEAD_CASES`.
        export: bool. Serve the SavedModel export (see `export_pairs`).

    Returns:
        The model outputs on `x` before saving.
    """
    import json

    import keras

    import finetunekit as fk

    head_case = head_case or HeadCase(None, None, served=same_outputs)
    backbone_case = BACKBONE_CASES[ft.backbone_kind.name]
    refuses = {**backbone_case.refuses, **head_case.refuses}

    history = ft.fit(x, y, epochs=1, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    check_fit_on_dataset(ft, x, y, refuses.get("fit_dataset", refuses.get("dataset")))
    outputs = ft.predict(x, verbose=0)
    assert outputs.dtype == np.float32 and len(outputs) == len(x)
    decoded = ft.predict_labels(x)
    assert len(decoded) == len(x)
    check_predict_on_dataset(ft, x, outputs, refuses.get("dataset"))
    expected = {"predict": outputs, "predict_labels": decoded}
    for name in ft.head.task_methods:
        expected[name] = TASK_CALLS[name](ft, x, y, expected)
    check_report(ft, x, y)
    if export:
        check_export(ft, x, tmp_path, expected, backbone_case.served, head_case.served,
                     refuses.get("export"))
    config = json.loads(json.dumps(ft.get_config()))
    rebuilt = type(ft).from_config(config)
    assert type(rebuilt.head) is type(ft.head)
    assert rebuilt.head.get_config() == ft.head.get_config()
    assert type(rebuilt.backbone_kind).modality == type(ft.backbone_kind).modality
    path = str(tmp_path / "model.keras")
    ft.save(path)
    loaded = fk.load(path)
    assert type(loaded) is type(ft) and loaded.class_names == ft.class_names
    np.testing.assert_allclose(loaded.predict(x, verbose=0), outputs, atol=1e-5)
    np.testing.assert_equal(loaded.predict_labels(x), decoded)
    ft.set_unfreeze(0)  # with lora_rank only the LoRA factors still train
    assert all("lora" in w.path for w in ft.backbone.trainable_weights)
    check_fine_tune(ft, x, y, head_case.fine_tune, refuses.get("fine_tune"))
    if getattr(ft.backbone_kind, "lora_rank", None) is None:  # LoRA refuses to open blocks
        assert ft.set_unfreeze(1) and ft.backbone.trainable_weights
    keras.backend.clear_session()
    return outputs
