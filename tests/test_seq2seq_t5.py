"""A tiny random T5 (keras-hub T5Backbone + T5Seq2SeqLM) through the seq2seq kind."""

import io

import keras
import numpy as np
import pytest

import finetunekit as fk
from tests.test_seq2seq import WORDS, pairs


def tiny_t5():
    """A 1-layer T5 (hidden 16) with an in-memory word-level SentencePiece model."""
    sentencepiece = pytest.importorskip("sentencepiece")
    import keras_hub

    proto = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter([" ".join(WORDS)] * 4), model_writer=proto,
        vocab_size=len(WORDS) + 3, model_type="WORD", pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>", minloglevel=2,
    )
    tokenizer = keras_hub.models.T5Tokenizer(proto=proto.getvalue())
    preprocessor = keras_hub.models.T5Seq2SeqLMPreprocessor(
        tokenizer, encoder_sequence_length=16, decoder_sequence_length=16
    )
    backbone = keras_hub.models.T5Backbone(
        vocabulary_size=tokenizer.vocabulary_size(), num_layers=1, num_heads=2, hidden_dim=16,
        intermediate_dim=32, key_value_dim=8,
    )
    return backbone, preprocessor


def test_t5_trains_and_generates():
    keras.utils.set_random_seed(0)
    backbone, preprocessor = tiny_t5()
    ft = fk.FineTuner(backbone=backbone, preprocessor=preprocessor, unfreeze={"decoder": 1},
                      head=fk.Seq2SeqHead(max_target_length=6))
    assert isinstance(ft.backbone_kind, fk.backbones.Seq2SeqBackbone)
    assert ft.unfrozen_blocks == ["decoder_layer_0"]
    sources, targets = pairs(8)
    ft.compile(learning_rate=1e-2)
    history = ft.fit(sources, targets, epochs=1, batch_size=8, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    texts = ft.predict_text(sources[:2])
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
