"""Text classification with tiny random keras-hub BERT backbones (no downloads)."""

import json

import numpy as np
import pytest

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + (
    "great film dull what a ride bad good movie the is boring awful fun fine plot"
).split()
TEXTS = ["great film", "dull movie", "what a ride", "boring awful film", "good fun", "bad"] * 4
LABELS = ["positive", "negative", "positive", "negative", "positive", "negative"] * 4


def tiny_bert(sequence_length=16, num_layers=2):
    """A 2-layer BERT with hidden size 8 and the test's own vocabulary."""
    import keras_hub

    tokenizer = keras_hub.models.BertTokenizer(vocabulary=VOCAB)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
        tokenizer, sequence_length=sequence_length
    )
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(VOCAB),
        num_layers=num_layers,
        num_heads=2,
        hidden_dim=8,
        intermediate_dim=16,
        max_sequence_length=32,
    )
    return backbone, preprocessor


def text_tuner(head=None, **options):
    import finetunekit as fk

    backbone, preprocessor = tiny_bert()
    head = head or fk.ClassificationHead(num_classes=2, pooling="cls")
    return fk.FineTuner(backbone=backbone, preprocessor=preprocessor, head=head, **options)


def trainable_paths(model):
    return {v.path for v in model.trainable_variables}


def test_fit_on_strings_and_predict_labels():
    ft = text_tuner(unfreeze="all")
    assert ft.backbone_kind.modality == "text"
    ft.compile(learning_rate=1e-2)
    history = ft.fit(TEXTS, LABELS, epochs=3, batch_size=4, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert ft.class_names == ["negative", "positive"]
    # Training sentences come back with their own labels.
    assert ft.predict_labels(["what a ride", "boring awful film", "good fun"]) == [
        "positive", "negative", "positive"
    ]
    probs = ft.predict(["what a ride"], verbose=0)
    assert probs.shape == (1, 2) and probs.dtype == np.float32


def test_save_load_takes_raw_strings(tmp_path):
    import finetunekit as fk

    ft = text_tuner(unfreeze=1)
    ft.fit(TEXTS, LABELS, epochs=1, batch_size=4, verbose=0)
    before = ft.predict(TEXTS, verbose=0)
    path = str(tmp_path / "sentiment.keras")
    ft.save(path)
    loaded = fk.load(path)
    assert isinstance(loaded, fk.FineTuner)
    assert loaded.backbone_kind.modality == "text"
    assert loaded.class_names == ["negative", "positive"]
    np.testing.assert_allclose(loaded.predict(TEXTS, verbose=0), before, atol=1e-6)
    assert loaded.predict_labels(["what a ride"]) == ft.predict_labels(["what a ride"])
    # The tokenizer (vocabulary) is inside the file.
    assert loaded.preprocessor.tokenizer.vocabulary_size() == len(VOCAB)


def test_config_is_json_and_rebuilds():
    import finetunekit as fk

    ft = text_tuner(sequence_length=12)
    config = json.loads(json.dumps(ft.get_config()))
    assert config["sequence_length"] == 12
    rebuilt = fk.FineTuner.from_config(config)
    assert rebuilt.backbone_kind.modality == "text"
    assert rebuilt.backbone_kind.sequence_length == 12


@pytest.mark.parametrize("pooling", ["cls", "mean", "max"])
def test_dynamic_padding_equals_fixed_padding(pooling):
    import finetunekit as fk

    ft = text_tuner(head=fk.ClassificationHead(num_classes=3, pooling=pooling, hidden_units=(4,)))
    texts = ["great", "what a ride bad good movie the is boring", "a", "dull film fun fine plot"]
    dynamic = ft.predict(texts, verbose=0, batch_size=3)
    fixed = ft.predict(texts, verbose=0, batch_size=3, padding="fixed")
    np.testing.assert_allclose(dynamic, fixed, atol=1e-5)
    # One text alone (its own length) gives the same output as inside a longer batch.
    alone = ft.predict(texts[:1], verbose=0)
    np.testing.assert_allclose(alone[0], fixed[0], atol=1e-5)


def test_batches_are_padded_to_their_longest_text():
    ft = text_tuner()
    texts = ["great", "a b", "what a ride bad good movie"]
    ds = ft.prepare(texts, None, batch_size=2, require_labels=False).train.x
    shapes = [batch["token_ids"].shape[1] for batch in ds]
    assert shapes == [4, 8]  # [CLS] great [SEP] / [CLS] 6 words [SEP], not 16
    # Bucketing, in order: each batch rounded up to a bucket width (8, 16 here).
    batches = list(
        ft.prepare(texts, None, batch_size=2, require_labels=False, padding="bucket").train.x
    )
    assert [b["token_ids"].shape[1] for b in batches] == [8, 8]
    assert batches[0]["padding_mask"].numpy().sum(axis=1).tolist() == [3, 4]
    ds = ft.prepare(
        ["great"], None, batch_size=2, require_labels=False, padding="fixed"
    ).train.x
    assert next(iter(ds))["token_ids"].shape[1] == 16


def test_truncates_to_sequence_length():
    ft = text_tuner(sequence_length=6)
    ds = ft.prepare(
        [" ".join(VOCAB[5:])], None, batch_size=2, require_labels=False
    ).train.x
    assert next(iter(ds))["token_ids"].shape[1] == 6


def test_bucketed_training():
    ft = text_tuner(unfreeze="all")
    history = ft.fit(TEXTS, LABELS, epochs=2, batch_size=4, verbose=0, padding="bucket")
    assert np.isfinite(history.history["loss"]).all()


def test_bucketing_sees_every_text_once_in_batches_of_similar_length():
    import finetunekit as fk

    ft = text_tuner(head=fk.ClassificationHead(12, pooling="cls"))
    rng = np.random.default_rng(0)
    # 203 texts of 1 to 12 words; the label is the word count - 1, to check pairing.
    counts = rng.integers(1, 13, 203)
    texts = [" ".join(rng.choice(VOCAB[5:], size=n)) for n in counts]
    ds = ft.prepare(
        texts, counts - 1, batch_size=8, shuffle=True, seed=0, padding=[4, 8, 12]
    ).train.x
    assert int(ds.cardinality()) == 26  # ceil(203 / 8), as without bucketing
    epochs = []
    for _ in range(2):  # two epochs, two shuffles
        seen, spreads, order = 0, [], []
        for features, targets in ds:
            lengths = features["padding_mask"].numpy().sum(1)
            width = features["token_ids"].shape[1]
            assert width in (4, 8, 12, 16)  # the buckets, capped at sequence_length (16)
            assert width == min(b for b in (4, 8, 12, 16) if b >= lengths.max())
            pads = features["padding_mask"].numpy() == 0
            assert not features["token_ids"].numpy()[pads].any()  # [PAD] is id 0
            np.testing.assert_array_equal(lengths - 2, targets.numpy() + 1)  # [CLS] .. [SEP]
            seen += len(lengths)
            spreads.append(lengths.max() - lengths.min())
            order.append(tuple(lengths))
        assert seen == 203
        assert np.mean(spreads) <= 2.0  # sorted within chunks (random batches: about 9)
        epochs.append(order)
    assert epochs[0] != epochs[1]  # batch order (and contents) change between epochs


def test_bucketing_keeps_each_text_with_its_own_label():
    import finetunekit as fk

    ft = text_tuner(head=fk.ClassificationHead(16, pooling="cls"))
    words = VOCAB[5:]  # 16 words; text i repeats word i % 16 (1 + i % 5) times, label i % 16
    texts = [" ".join([words[i % 16]] * (1 + i % 5)) for i in range(48)]
    ds = ft.prepare(texts, np.arange(48) % 16, batch_size=4, shuffle=True, seed=1,
                     padding="bucket").train.x
    id_of = {word: VOCAB.index(word) for word in words}
    seen = []
    for features, targets in ds:
        for ids, mask, label in zip(features["token_ids"].numpy(),
                                    features["padding_mask"].numpy(), targets.numpy()):
            assert ids[1] == id_of[words[label]]
            seen.append((int(label), int(mask.sum()) - 2))
    assert sorted(seen) == sorted((i % 16, 1 + i % 5) for i in range(48))


def test_default_bucket_ladder_is_capped_at_the_sequence_length():
    from finetunekit.families.text.pipeline import bucket_lengths

    assert bucket_lengths("bucket", 128) == [8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128]
    assert bucket_lengths("bucket", 20) == [8, 16, 20]
    assert bucket_lengths([64, 16, 500], 128) == [16, 64, 128]


def test_predictions_keep_input_order_with_bucketing():
    import finetunekit as fk

    ft = text_tuner(head=fk.ClassificationHead(2, pooling="mean"))
    texts = [TEXTS[i] for i in np.random.default_rng(0).permutation(len(TEXTS))]
    bucketed = ft.predict(texts, batch_size=5, padding="bucket")
    fixed = ft.predict(texts, batch_size=len(texts), padding="fixed")
    np.testing.assert_allclose(bucketed, fixed, atol=1e-5)


def test_unknown_padding_is_rejected():
    ft = text_tuner()
    with pytest.raises(ValueError, match="Unknown padding"):
        ft.predict(["great"], padding="longest")


@pytest.mark.parametrize("unfreeze", [0, 1, 2, "all"])
def test_unfreeze_top_transformer_layers(unfreeze):
    ft = text_tuner(unfreeze=unfreeze)
    paths = trainable_paths(ft)
    backbone = {p for p in paths if not p.startswith("classification_head")}
    layer0 = any(p.startswith("transformer_layer_0/") for p in backbone)
    layer1 = any(p.startswith("transformer_layer_1/") for p in backbone)
    embeddings = any("embedding" in p for p in backbone)
    assert not any(p.startswith("pooled_dense") for p in backbone)
    assert any(p.startswith("classification_head") for p in paths)
    if unfreeze == 0:
        assert backbone == set()
    elif unfreeze == 1:
        assert layer1 and not layer0 and not embeddings
    elif unfreeze == 2:
        assert layer0 and layer1 and not embeddings
    else:
        assert layer0 and layer1 and embeddings
    groups = ft.backbone_kind.groups()
    assert [name for name, _ in groups] == ["stem", "transformer_layer_0", "transformer_layer_1"]


def test_unfreeze_more_layers_than_the_encoder_has():
    with pytest.raises(ValueError, match="blocks"):
        text_tuner(unfreeze=3)


def test_backbone_instance_needs_a_preprocessor():
    import finetunekit as fk

    backbone, _ = tiny_bert()
    with pytest.raises(ValueError, match="preprocessor"):
        fk.FineTuner(backbone=backbone, head=fk.ClassificationHead(num_classes=2))


def test_local_preset_folder_resolves_to_text(tmp_path):
    import finetunekit as fk
    from finetunekit.core.kind import resolve_backbone

    backbone, preprocessor = tiny_bert()
    backbone.save_to_preset(str(tmp_path))
    preprocessor.save_to_preset(str(tmp_path))
    ft = fk.FineTuner(
        backbone=str(tmp_path), head=fk.ClassificationHead(num_classes=2), sequence_length=10
    )
    assert ft.backbone_kind.modality == "text" and ft.backbone_kind.sequence_length == 10
    np.testing.assert_allclose(ft.backbone.get_weights()[0], backbone.get_weights()[0])
    assert resolve_backbone("resnet50", weights=None, input_shape=None, preprocessing="auto",
                            policy="float32").modality == "image"


def test_invalid_utf8_and_odd_values_never_crash():
    ft = text_tuner()
    out = ft.predict([b"\xff\xfe broken \xc3", "caf\udcff", "", "great film"], verbose=0)
    assert out.shape == (4, 2) and np.isfinite(out).all()


def test_text_cleaning():
    ft = text_tuner(preprocessing="clean")
    a = ft.predict(["<b>great</b>\n\n   film&amp;"], verbose=0)
    b = ft.predict(["great film&"], verbose=0)
    np.testing.assert_allclose(a, b, atol=1e-6)
    with pytest.raises(ValueError, match="preprocessing"):
        text_tuner(preprocessing="caffe")


def test_regression_and_multi_label_heads_on_text():
    import finetunekit as fk

    ft = text_tuner(head=fk.RegressionHead(units=1, pooling="mean"))
    ft.fit(TEXTS, np.linspace(0, 1, len(TEXTS)), epochs=1, batch_size=8, verbose=0)
    assert ft.predict(["great"], verbose=0).shape == (1, 1)
    ft = text_tuner(head=fk.ClassificationHead(num_classes=2, multi_label=True, pooling="max"))
    y = [["fun"], ["dull"], ["fun", "dull"], [], ["fun"], ["dull"]] * 4
    ft.fit(TEXTS, y, epochs=1, batch_size=8, verbose=0)
    assert ft.class_names == ["dull", "fun"]
    labels = ft.predict_labels(["great", "dull"])
    assert all(isinstance(row, list) and set(row) <= {"dull", "fun"} for row in labels)
    probs = ft.predict(["great", "dull"], verbose=0)
    expected = [[name for name, p in zip(ft.class_names, row) if p >= 0.5] for row in probs]
    assert labels == expected


def test_dataset_of_strings():
    import tensorflow as tf

    ft = text_tuner()
    ds = tf.data.Dataset.from_tensor_slices((TEXTS, [i % 2 for i in range(len(TEXTS))])).batch(5)
    ft.fit(ds, epochs=1, verbose=0)
    out = ft.predict(tf.data.Dataset.from_tensor_slices(TEXTS[:3]), verbose=0)
    assert out.shape == (3, 2)


def test_dataframe_csv_jsonl_and_folder(tmp_path):
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"text": TEXTS, "label": LABELS})
    ft = text_tuner()
    ft.fit(df, epochs=1, batch_size=8, verbose=0)
    assert ft.class_names == ["negative", "positive"]
    df.to_csv(tmp_path / "train.csv", index=False)
    df.to_json(tmp_path / "train.jsonl", orient="records", lines=True)
    ft.fit(str(tmp_path / "train.csv"), epochs=1, batch_size=8, verbose=0)
    ft.fit(str(tmp_path / "train.jsonl"), epochs=1, batch_size=8, verbose=0,
           validation_split=0.25, seed=1)
    folder = tmp_path / "folder"
    for i, (text, label) in enumerate(zip(TEXTS, LABELS, strict=True)):
        (folder / label).mkdir(parents=True, exist_ok=True)
        (folder / label / f"{i}.txt").write_bytes(text.encode() + (b"\xff" if i == 0 else b""))
    ft.fit(str(folder), epochs=1, batch_size=8, verbose=0)
    evaluation = ft.evaluate(str(folder), verbose=0)
    assert np.isfinite(evaluation).all()


def test_shuffling_text_dataset_keeps_each_text_with_its_label():
    import tensorflow as tf

    ft = text_tuner()
    texts = [f"{word} film" for word in ("great", "dull") * 20]
    labels = [1, 0] * 20
    ds = tf.data.Dataset.from_tensor_slices((texts, labels))
    ds = ds.shuffle(40, seed=0, reshuffle_each_iteration=True)
    batches = ft.prepare(ds, batch_size=8).train.x
    assert int(batches.cardinality()) == 5
    great = VOCAB.index("great")
    for _ in range(2):  # two epochs, two shuffles
        for features, targets in batches:
            first_word = features["token_ids"].numpy()[:, 1]
            np.testing.assert_array_equal(first_word == great, targets.numpy() == 1)


def test_balanced_class_weight_on_text_matches_sklearn(fit_kwargs):
    from sklearn.utils.class_weight import compute_class_weight

    texts = ["great film"] * 9 + ["dull movie"] * 3
    labels = ["positive"] * 9 + ["negative"] * 3
    ft = text_tuner()
    ft.fit(texts, labels, epochs=1, batch_size=4, verbose=0, class_weight="balanced")
    ids = np.array([ft.class_names.index(label) for label in labels])
    expected = compute_class_weight("balanced", classes=np.array([0, 1]), y=ids)
    assert fit_kwargs["class_weight"] == pytest.approx({0: expected[0], 1: expected[1]})
