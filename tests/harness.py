"""The shared test harness: every registered backbone kind x every head gets the same checks.

A backbone kind (`fk.backbones.register_backbone_kind`) or a head (a
`fk.heads.Head` subclass) is added to the harness by adding one entry to
`BACKBONE_CASES` or `HEAD_CASES`; `tests/test_harness.py` fails for a kind or
a head that has none. Each case is tiny (random weights, 16-32 pixel images,
a 2-layer BERT with hidden size 8) so the whole matrix runs in about a minute.
"""

import dataclasses

import numpy as np

from tests.conftest import tiny_cnn
from tests.test_text import TEXTS, tiny_bert

N = 8


@dataclasses.dataclass
class BackboneCase:
    """How to build a tiny backbone of one kind and data for it."""

    modality: str
    options: callable  # () -> FineTuner keyword arguments (backbone=..., ...)
    inputs: callable  # (rng) -> N raw inputs
    default_head: str = "ClassificationHead"  # the head of the kind-only checks


@dataclasses.dataclass
class HeadCase:
    """How to build a head and targets for it."""

    make: callable  # () -> head
    targets: callable  # (rng, inputs) -> N targets
    modalities: tuple = ("image", "text")
    backbones: tuple = None  # backbone cases it runs on (None: every case of its modalities)


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


def _sources(rng):
    from tests.test_seq2seq import pairs

    return pairs(N, seed=int(rng.integers(1000)))[0]


BACKBONE_CASES = {
    "applications": BackboneCase(
        "image",
        lambda: {"backbone": "MobileNet", "weights": None, "input_shape": (32, 32, 3)},
        _images,
    ),
    "keras_model": BackboneCase(
        "image", lambda: {"backbone": tiny_cnn((32, 32, 3)), "preprocessing": "zero_one"}, _images
    ),
    "text_encoder": BackboneCase("text", _text_options, _texts),
    "keras_hub_image": BackboneCase(
        "image", lambda: {"backbone": tiny_hub_resnet(), "input_shape": (32, 32, 3)}, _images
    ),
    "embeddings": BackboneCase("ids", _embeddings_options, _interactions),
    "vector_model": BackboneCase("vector", _vector_options, _vectors),
    "audio": BackboneCase("audio", _audio_options, _audio),
    "seq2seq": BackboneCase("text_pairs", _seq2seq_options, _sources, "Seq2SeqHead"),
    "audio_moonshine": BackboneCase("audio", _moonshine_options, _audio),
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


def _reversed(rng, sources):
    return [" ".join(s.split()[::-1]) for s in sources]


def _word_tags(rng, texts):
    names = ["O", "B-X", "I-X"]
    return [[names[i % 3] for i, _ in enumerate(t.split())] for t in texts]


def _detection():
    import finetunekit as fk

    return fk.DetectionHead(num_classes=2, fpn_filters=8, num_head_convs=1, max_level=5)


def _boxes(rng, images):
    """Per image 0-2 boxes inside its 32x32 image (the second image has none)."""
    boxes, labels = [], []
    for index in range(len(images)):
        count = 0 if index == 1 else 1 + index % 2
        corner = rng.uniform(0, 14, (count, 2))
        boxes.append(np.concatenate([corner, corner + rng.uniform(8, 18, (count, 2))], axis=1))
        labels.append(rng.integers(0, 2, count))
    return {"boxes": boxes, "labels": labels}


HEAD_CASES = {
    "ClassificationHead": HeadCase(
        _classification, lambda rng, x: rng.integers(0, 2, N),
        ("image", "text", "ids", "vector", "audio"),
    ),
    "ClassificationHead/multi_label": HeadCase(
        _multi_label, lambda rng, x: (rng.random((N, 3)) > 0.5).astype("float32"),
        ("image", "text", "ids", "vector", "audio"),
    ),
    "RegressionHead": HeadCase(
        _regression, lambda rng, x: rng.random((N, 2)).astype("float32"),
        ("image", "text", "ids", "vector", "audio"),
    ),
    "TokenClassificationHead": HeadCase(_token_classification, _word_tags, ("text",)),
    "SegmentationHead": HeadCase(_segmentation, _masks, ("image",)),
    # tiny_cnn (the keras_model case) never reaches stride 8, so it has no P3 to detect on.
    "DetectionHead": HeadCase(_detection, _boxes, ("image",), ("applications",)),
    "RetrievalHead": HeadCase(_retrieval, lambda rng, x: x["item"].to_numpy(), ("ids",)),
    "RankingHead": HeadCase(
        _ranking, lambda rng, x: rng.integers(1, 6, N).astype("float32"), ("ids",)
    ),
    "SpeechToTextHead": HeadCase(_speech_to_text, _transcripts, ("audio",)),
    "Seq2SeqHead": HeadCase(_seq2seq, _reversed, ("text_pairs",)),
}


def matrix():
    """`(backbone case name, head case name)` pairs that fit together."""
    return [
        (kind, head)
        for kind, backbone in BACKBONE_CASES.items()
        for head, case in HEAD_CASES.items()
        if backbone.modality in case.modalities
        and (case.backbones is None or kind in case.backbones)
    ]


def build(kind, head_case, **options):
    """A FineTuner of the named backbone case with a fresh head of `head_case`."""
    import finetunekit as fk

    return fk.FineTuner(head=head_case.make(), **BACKBONE_CASES[kind].options(), **options)


def data(kind, head_case, seed=0):
    rng = np.random.default_rng(seed)
    x = BACKBONE_CASES[kind].inputs(rng)
    return x, head_case.targets(rng, x)


def as_dataset(head, x, y, batch_size=4):
    """A batched `tf.data.Dataset` of `(x, encoded y)`, or None for word-level targets."""
    import tensorflow as tf

    if head.target_layout != "example":
        return None  # word-level tags are aligned to tokens by the pipeline, not in a dataset
    if hasattr(x, "columns"):  # a DataFrame of interactions: one named input per column
        x = {column: x[column].to_numpy().astype(str) for column in x.columns}
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)


def check_task(ft, x, y, tmp_path):
    """The shared checks of one FineTuner: fit, predict, decode, config, save/load, freezing.

    Returns:
        The model outputs on `x` before saving.
    """
    import json

    import keras

    import finetunekit as fk

    history = ft.fit(x, y, epochs=1, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    dataset = as_dataset(ft.head, x, ft.head.encode_targets(y, ft.class_names)[0])
    if dataset is not None:
        history = ft.fit(dataset, epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"]).all()
    outputs = ft.predict(x, verbose=0)
    assert outputs.dtype == np.float32 and len(outputs) == len(x)
    decoded = ft.predict_labels(x)
    assert len(decoded) == len(x)
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
    ft.set_unfreeze(0)
    assert not ft.backbone.trainable_weights
    assert ft.set_unfreeze(1) and ft.backbone.trainable_weights
    keras.backend.clear_session()
    return outputs
