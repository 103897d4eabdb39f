"""Token classification (NER) with a tiny random keras-hub BERT."""

import json

import numpy as np
import pytest

from tests.test_text import text_tuner

SENTENCES = [
    ["great", "film", "the", "movie"],
    ["what", "a", "ride"],
    ["the", "plot", "is", "fun"],
    ["dull", "film"],
] * 3
TAGS = [
    ["B-ADJ", "B-N", "O", "B-N"],
    ["O", "O", "B-N"],
    ["O", "B-N", "O", "B-ADJ"],
    ["B-ADJ", "B-N"],
] * 3


def ner_tuner(**options):
    import finetunekit as fk

    return text_tuner(head=fk.TokenClassificationHead(num_tags=3), unfreeze="all", **options)


def test_word_to_subword_alignment():
    ft = ner_tuner()
    pipeline = ft.backbone_kind.data_pipeline(ft.head)
    # "movies" is not in the vocabulary: [UNK]; "filmfun" is not either.
    ids, starts = pipeline.encode_words([["great", "film"], ["a", "plot"]])
    assert ids[0][0] == 2 and ids[0][-1] == 3  # [CLS] ... [SEP]
    assert starts == [[1, 2], [1, 2]]
    prepared = ft.prepare(SENTENCES[:2], TAGS[:2], batch_size=2, padding="dynamic")
    names = prepared.class_names
    features, labels = next(iter(prepared.train.x))
    labels = labels.numpy()
    assert names == ["O", "B-ADJ", "B-N"]
    assert labels[0].tolist() == [-100, 1, 2, 0, 2, -100]
    assert labels[1].tolist()[:5] == [-100, 0, 0, 2, -100]  # padding ignored too
    assert features["token_ids"].shape == (2, 6)
    # Buckets pad tokens and tags alike to a bucket width (8), tags with the ignore value.
    bucketed = ft.prepare(SENTENCES[:2], TAGS[:2], batch_size=2, padding="bucket").train.x
    features, bucketed = next(iter(bucketed))
    assert features["token_ids"].shape == bucketed.shape == (2, 8)
    assert bucketed.numpy()[0].tolist() == labels[0].tolist() + [-100, -100]


def test_truncated_words_are_ignored_and_predicted_as_o():
    ft = ner_tuner(sequence_length=4)
    pipeline = ft.backbone_kind.data_pipeline(ft.head)
    _, starts = pipeline.encode_words([["great", "film", "the", "movie"]])
    assert starts == [[1, 2, None, None]]


def test_fit_predict_tags_spans_and_scores(tmp_path):
    import finetunekit as fk

    ft = ner_tuner()
    ft.compile(learning_rate=1e-2)
    history = ft.fit(SENTENCES, TAGS, epochs=8, batch_size=4, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    tags = ft.predict_labels(SENTENCES[:4])
    assert [len(t) for t in tags] == [4, 3, 4, 2]
    # The tiny tagger learns the training sentences: most words get their own tag.
    correct = sum(p == t for row, true in zip(tags, TAGS[:4]) for p, t in zip(row, true))
    assert correct >= 11, (tags, TAGS[:4])  # of 13 words
    spans = ft.predict_entities([SENTENCES[0]])
    from finetunekit.families.text.ner import entity_spans

    assert spans == [entity_spans(SENTENCES[0], tags[0])]
    scores = ft.evaluate_entities(SENTENCES, TAGS)
    assert set(scores) == {"precision", "recall", "f1"}
    assert scores["f1"] >= 0.7, scores
    report = ft.evaluate(SENTENCES, TAGS, report=True)
    assert report.task == "entities" and report.num_examples == len(SENTENCES)
    assert abs(report.metrics["f1"] - scores["f1"]) < 1e-6
    path = str(tmp_path / "ner.keras")
    ft.save(path)
    loaded = fk.load(path)
    assert loaded.predict_labels(SENTENCES[:4]) == tags


def test_conll_file(tmp_path):
    from finetunekit.core.data.text_readers import read_conll

    path = tmp_path / "train.conll"
    lines = []
    for words, tags in zip(SENTENCES, TAGS, strict=True):
        lines += [f"{w} X {t}" for w, t in zip(words, tags, strict=True)] + [""]
    path.write_text("-DOCSTART- O\n\n" + "\n".join(lines))
    sentences, tags = read_conll(str(path))
    assert sentences == SENTENCES and tags == TAGS
    ft = ner_tuner()
    ft.fit(str(path), epochs=1, batch_size=4, verbose=0)
    assert ft.class_names == ["O", "B-ADJ", "B-N"]  # tag names read from the file
    assert [len(t) for t in ft.predict_labels(sentences[:2])] == [4, 3]


def test_entity_helpers():
    from finetunekit.families.text.ner import entity_scores, entity_spans

    spans = entity_spans(["John", "Smith", "in", "Paris"], ["B-PER", "I-PER", "O", "B-LOC"])
    assert spans == [
        {"type": "PER", "start": 0, "end": 2, "text": "John Smith"},
        {"type": "LOC", "start": 3, "end": 4, "text": "Paris"},
    ]
    scores = entity_scores([["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "I-PER", "O", "O"]])
    assert scores["precision"] == 1.0 and scores["recall"] == 0.5


def test_head_config_round_trip():
    import keras

    import finetunekit as fk

    head = fk.TokenClassificationHead(num_tags=5, hidden_units=(4,), dropout=0.1)
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(head)))
    rebuilt = keras.saving.deserialize_keras_object(config)
    assert isinstance(rebuilt, fk.TokenClassificationHead)
    assert rebuilt.num_tags == 5 and rebuilt.hidden_units == (4,)
    out = rebuilt(np.zeros((2, 7, 8), "float32"))
    assert out.shape == (2, 7, 5)
    with pytest.raises(ValueError, match="num_tags"):
        fk.TokenClassificationHead(num_tags=1)
