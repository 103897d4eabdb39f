"""Text augmentation (`augment={"random_deletion", "random_swap", "token_mask"}`): training only, labels kept."""

import collections

import keras
import numpy as np
import pytest

import finetunekit as fk
from tests.test_text import VOCAB, tiny_bert

POSITIVE = "great film what a ride good fun".split()
NEGATIVE = "dull movie boring awful bad the plot".split()
TEXTS = [" ".join(POSITIVE), " ".join(NEGATIVE)] * 4
LABELS = [1, 0] * 4
SPECIAL = {"[PAD]", "[CLS]", "[SEP]", "[MASK]"}


def tuner(**augment):
    backbone, preprocessor = tiny_bert()
    return fk.FineTuner(
        backbone=backbone, preprocessor=preprocessor, head=fk.ClassificationHead(2),
        augment=augment,
    )


def rows(batches):
    """`(words, label)` per example of a batched dataset, over one pass."""
    out = []
    for features, labels in batches:
        for ids, mask, label in zip(
            features["token_ids"].numpy(), features["padding_mask"].numpy(), labels.numpy()
        ):
            out.append(([VOCAB[i] for i in ids[mask.astype(bool)]], int(label)))
    return out


def prepare(ft, training, **options):
    pipeline = ft.backbone_kind.data_pipeline(ft.head)
    return pipeline.prepare(
        TEXTS, LABELS, batch_size=4, shuffle=training, training=training, seed=0, **options
    )


def test_training_split_is_augmented_every_epoch_and_keeps_labels():
    ft = tuner(random_deletion=0.3, random_swap=0.3, token_mask=0.3, seed=1)
    train = prepare(ft, training=True).train.x
    first, second = rows(train), rows(train)
    assert first != second  # new edits every epoch
    edited = 0
    for words, label in first + second:
        own = set(POSITIVE if label == 1 else NEGATIVE)
        real = [w for w in words if w not in SPECIAL]
        assert words[0] == "[CLS]" and words[-1] == "[SEP]"
        assert real and set(real) <= own  # still its own label's text
        edited += words[1:-1] != (POSITIVE if label == 1 else NEGATIVE)
    assert edited > len(first)
    assert any("[MASK]" in words for words, _ in first)


def test_evaluation_validation_and_prediction_see_the_texts_unchanged():
    ft = tuner(random_deletion=0.5, random_swap=0.5, token_mask=0.5, seed=1)
    expected = [["[CLS]", *t.split(), "[SEP]"] for t in TEXTS]
    evaluation = rows(prepare(ft, training=False).train.x)
    assert [w for w, _ in evaluation] == expected
    split = prepare(ft, training=True, validation_split=0.5)
    for words, label in rows(split.validation.x):
        assert words[1:-1] == (POSITIVE if label == 1 else NEGATIVE)
    pipeline = ft.backbone_kind.data_pipeline(ft.head)
    predicted = pipeline.prepare(TEXTS[:2], None, require_labels=False).train.x
    features = next(iter(predicted))
    real = features["padding_mask"].numpy()[0].astype(bool)
    assert [VOCAB[i] for i in features["token_ids"].numpy()[0][real]] == expected[0]


def test_each_edit_on_its_own():
    swap = rows(prepare(tuner(random_swap=0.9, seed=3), training=True).train.x)
    for words, label in swap:  # the same words, reordered
        assert collections.Counter(words[1:-1]) == collections.Counter(
            POSITIVE if label == 1 else NEGATIVE
        )
    assert any(w[1:-1] not in (POSITIVE, NEGATIVE) for w, _ in swap)
    deletion = rows(prepare(tuner(random_deletion=0.95, seed=3), training=True).train.x)
    assert all(len(words) >= 3 for words, _ in deletion)  # one word always stays
    assert min(len(words) for words, _ in deletion) < 5
    masked = rows(prepare(tuner(token_mask=0.5, seed=3), training=True).train.x)
    for words, label in masked:  # positions kept; [CLS] and [SEP] never masked
        own = POSITIVE if label == 1 else NEGATIVE
        assert all(w in ("[MASK]", o) for w, o in zip(words[1:-1], own, strict=True))


def test_a_seed_makes_the_edits_reproducible():
    a = rows(prepare(tuner(random_deletion=0.4, seed=7), training=True).train.x)
    b = rows(prepare(tuner(random_deletion=0.4, seed=7), training=True).train.x)
    assert a == b


def test_fit_with_augmentation_and_the_saved_model_keeps_it(tmp_path):
    ft = tuner(random_swap=0.2, token_mask=0.1, seed=0)
    history = ft.fit(TEXTS, LABELS, epochs=1, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    ft.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    config = loaded.backbone_kind.text_augmentation.get_config()
    assert (config["random_swap"], config["token_mask"], config["seed"]) == (0.2, 0.1, 0)
    np.testing.assert_allclose(
        loaded.predict(TEXTS[:2], verbose=0), ft.predict(TEXTS[:2], verbose=0), atol=1e-6
    )


def test_augmented_unbatched_dataset_keeps_pairs():
    import tensorflow as tf

    ft = tuner(random_deletion=0.3, token_mask=0.3, seed=2)
    ds = tf.data.Dataset.from_tensor_slices((TEXTS, LABELS))
    pipeline = ft.backbone_kind.data_pipeline(ft.head)
    for words, label in rows(pipeline.prepare(ds, batch_size=4, training=True).train.x):
        real = [w for w in words if w not in SPECIAL]
        assert real and set(real) <= set(POSITIVE if label == 1 else NEGATIVE)


@pytest.mark.parametrize("value", [1.0, -0.1, True])
def test_rates_are_probabilities(value):
    with pytest.raises(ValueError, match=r"`token_mask` must be a probability in \[0, 1\)"):
        fk.layers.TextAugmentation(token_mask=value)
