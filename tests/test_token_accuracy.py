"""TokenAccuracy: the generative heads' training metric counts only the target mask.

The speech-to-text, seq2seq and causal-LM pipelines pass the loss mask (0 on
the prompt and padding) as per-token sample weights; the heads' metric must see
them (Keras `weighted_metrics`) and count nothing else.
"""

import json

import keras
import numpy as np
import pytest

import finetunekit as fk
from finetunekit.training.metrics import TokenAccuracy

VOCAB = 7


def padded_batch(padding, seed=0):
    """Labels, a loss mask and logits right on the masked tokens only, wrong everywhere else."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, VOCAB, (3, 5 + padding)).astype("int32")
    mask = np.zeros(labels.shape, "float32")
    mask[:, 1:5] = 1.0  # position 0 is a prompt token, the rest padding
    mask[2, 3:] = 0.0  # a shorter target
    right = np.eye(VOCAB, dtype="float32")[labels] * 20.0
    wrong = np.eye(VOCAB, dtype="float32")[(labels + 1) % VOCAB] * 20.0
    return labels, mask, np.where(mask[..., None] > 0, right, wrong)


@pytest.mark.parametrize("padding", [0, 3, 40])
def test_a_perfect_prediction_scores_one_whatever_the_padding(padding):
    labels, mask, logits = padded_batch(padding)
    metric = TokenAccuracy()
    metric.update_state(labels, logits, sample_weight=mask)
    assert float(metric.result()) == 1.0
    plain = keras.metrics.SparseCategoricalAccuracy()
    plain.update_state(labels, logits)  # what the heads logged before: padding counted
    assert float(plain.result()) == pytest.approx(mask.mean())


def test_counts_positions_not_weights_and_skips_ignored_labels():
    labels, mask, logits = padded_batch(2)
    metric = TokenAccuracy()
    metric.update_state(labels, logits, sample_weight=mask * 3.5)
    assert float(metric.result()) == 1.0
    logits[0, 1] = np.roll(logits[0, 1], 1)  # one wrong target token of the 10 masked ones
    metric.reset_state()
    metric.update_state(labels, logits, sample_weight=mask)
    assert float(metric.result()) == pytest.approx(1.0 - 1.0 / mask.sum())
    ignored = np.where(mask > 0, labels, -100)  # the mask given as ignore labels instead
    metric.reset_state()
    metric.update_state(ignored, logits)
    assert float(metric.result()) == pytest.approx(1.0 - 1.0 / mask.sum())
    metric.reset_state()
    metric.update_state(labels, logits, sample_weight=np.array([0.0, 1.0, 1.0]))  # per example
    assert float(metric.result()) == pytest.approx(np.mean(labels[1:] == logits[1:].argmax(-1)))


@pytest.mark.parametrize("head", [fk.SpeechToTextHead, fk.InstructionHead, fk.Seq2SeqHead])
def test_every_generative_head_logs_the_masked_token_accuracy(head):
    instance = head()
    metrics = instance.default_metrics()
    assert instance.weighted_metrics is True
    assert [type(m) for m in metrics][:1] == [TokenAccuracy] and metrics[0].name == "token_accuracy"


def tiny_sequence_model():
    inputs = keras.Input((None,), dtype="int32")
    outputs = keras.layers.Dense(VOCAB)(keras.layers.Embedding(VOCAB, 4)(inputs))
    return keras.Model(inputs, outputs)


def test_config_and_save_load_round_trip(tmp_path):
    metric = TokenAccuracy(name="masked")
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(metric)))
    rebuilt = keras.saving.deserialize_keras_object(config)
    assert type(rebuilt) is TokenAccuracy and rebuilt.get_config() == metric.get_config()
    model = tiny_sequence_model()
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  weighted_metrics=[TokenAccuracy()])
    labels, mask, _ = padded_batch(3)
    before = model.evaluate(labels, labels, sample_weight=mask, return_dict=True, verbose=0)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    after = loaded.evaluate(labels, labels, sample_weight=mask, return_dict=True, verbose=0)
    predicted = np.asarray(model.predict(labels, verbose=0)).argmax(-1)
    expected = np.sum((predicted == labels) * mask) / mask.sum()
    assert before["token_accuracy"] == pytest.approx(expected, abs=1e-6)
    assert after["token_accuracy"] == pytest.approx(before["token_accuracy"])
