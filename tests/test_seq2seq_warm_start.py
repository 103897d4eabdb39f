"""Seq2SeqHead(decoder="warm_start"): a tiny random BERT warm-starts an encoder-decoder."""

import keras
import numpy as np
import pytest

import finetunekit as fk

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + (
    "the cat sat on mat dog ran a red blue big small"
).split()
WORDS = VOCAB[5:]


def tiny_bert(num_layers=1, sequence_length=16):
    """A BERT with hidden size 16 and an in-memory WordPiece vocabulary; `(backbone, preprocessor)`."""
    import keras_hub

    tokenizer = keras_hub.models.BertTokenizer(vocabulary=VOCAB)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
        tokenizer, sequence_length=sequence_length
    )
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(VOCAB), num_layers=num_layers, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=32,
    )
    return backbone, preprocessor


def copy_pairs(n, seed=0):
    """Generated copy task: each target is its source."""
    rng = np.random.default_rng(seed)
    sources = [" ".join(rng.choice(WORDS, rng.integers(2, 5))) for _ in range(n)]
    return sources, list(sources)


def warm_tuner(num_layers=1, max_target_length=8, **options):
    backbone, preprocessor = tiny_bert(num_layers)
    options.setdefault("unfreeze", "all")
    return fk.FineTuner(
        backbone=backbone, preprocessor=preprocessor,
        head=fk.Seq2SeqHead(max_target_length=max_target_length, decoder="warm_start"), **options,
    )


def _values(layer):
    return [np.asarray(w) for w in layer.weights if "lora" not in w.path]


def test_decoder_starts_from_the_encoder_layers_and_cross_attention_is_new():
    import keras_hub

    keras.utils.set_random_seed(0)
    bert, preprocessor = tiny_bert(num_layers=2)
    ft = fk.FineTuner(
        backbone=bert, preprocessor=preprocessor, unfreeze="all",
        head=fk.Seq2SeqHead(max_target_length=8, decoder="warm_start"),
    )
    model = ft.backbone
    assert "lm_logits" in ft.backbone_kind.provides and isinstance(ft.backbone_kind, fk.backbones.Seq2SeqBackbone)
    assert len(model.decoder_transformer_layers) == 2
    for source, encoder, decoder in zip(
        bert.transformer_layers, model.encoder_transformer_layers, model.decoder_transformer_layers
    ):
        for a, b in zip(_values(source), _values(encoder)):
            np.testing.assert_array_equal(a, b)
        for name in ("_self_attention_layer", "_self_attention_layer_norm",
                     "_feedforward_intermediate_dense", "_feedforward_output_dense",
                     "_feedforward_layer_norm"):
            for a, b, c in zip(_values(getattr(source, name)), _values(getattr(encoder, name)),
                               _values(getattr(decoder, name))):
                np.testing.assert_array_equal(a, c)
                np.testing.assert_array_equal(b, c)
        query = np.asarray(decoder._cross_attention_layer._query_dense.kernel)
        assert not np.allclose(query, np.asarray(source._self_attention_layer._query_dense.kernel))
    np.testing.assert_array_equal(
        np.asarray(model.token_embedding.embeddings), np.asarray(bert.token_embedding.embeddings)
    )
    assert model.token_embedding.tie_weights  # the output is tied to the token embedding
    assert isinstance(ft.preprocessor, keras_hub.models.Seq2SeqLMPreprocessor)
    packed = ft.preprocessor({"encoder_text": ["the cat"], "decoder_text": ["a dog"]})[0]
    ids = np.asarray(packed["decoder_token_ids"])[0]
    assert ids[0] == VOCAB.index("[CLS]") and VOCAB.index("[SEP]") in ids  # [CLS] starts, [SEP] ends
    assert ft.get_config()["head"]["config"]["decoder"] == "warm_start"


def test_trains_and_the_saved_model_generates_from_raw_strings(tmp_path):
    keras.utils.set_random_seed(1)
    ft = warm_tuner()
    ft.compile(learning_rate=1e-2)
    sources, targets = copy_pairs(8)
    history = ft.fit(sources, targets, epochs=3, batch_size=8, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    outputs = ft.predict(sources, verbose=0)
    ft.save(tmp_path / "warm.keras")
    loaded = fk.load(tmp_path / "warm.keras")
    assert loaded.head.decoder == "warm_start" and type(loaded.backbone) is type(ft.backbone)
    np.testing.assert_allclose(loaded.predict(sources, verbose=0), outputs, atol=1e-5)
    texts = loaded.predict_text(sources[:3])
    assert len(texts) == 3 and all(isinstance(t, str) for t in texts)


@pytest.mark.slow
def test_learns_the_copy_task_and_generates_it_after_saving(tmp_path):
    keras.utils.set_random_seed(0)
    ft = warm_tuner()
    ft.compile(learning_rate=1e-2)
    sources, targets = copy_pairs(8)
    ft.fit(sources, targets, epochs=80, batch_size=8, verbose=0)
    assert ft.predict_text(sources) == targets
    assert ft.predict_text(sources, strategy="beam", num_beams=2) == targets
    assert ft.evaluate(sources, targets, report=True).metrics["bleu"] == pytest.approx(100.0)
    ft.save(tmp_path / "warm.keras")
    assert fk.load(tmp_path / "warm.keras").predict_text(sources) == targets


def _trainable_layers(ft):
    return sorted({w.path.split("/")[0] for w in ft.backbone.trainable_weights})


def test_unfreeze_opens_encoder_and_decoder_separately_for_bart_and_warm_start():
    from tests.test_seq2seq import seq2seq_tuner

    bart = seq2seq_tuner(unfreeze={"decoder": 1})
    assert bart.unfrozen_blocks == ["decoder_layer_0"]
    assert bart.unfreeze == {"encoder": 0, "decoder": 1}
    assert all("decoder" in w.path for w in bart.backbone.trainable_weights)
    warm = warm_tuner(num_layers=2, unfreeze={"encoder": 1, "decoder": "all"})
    assert warm.unfrozen_blocks == ["encoder_layer_1", "decoder_layer_0", "decoder_layer_1"]
    assert _trainable_layers(warm) == ["decoder_layer_0", "decoder_layer_1", "encoder_layer_1"]
    assert warm.get_config()["unfreeze"] == {"encoder": 1, "decoder": "all"}
    assert warm.set_unfreeze({"encoder": 2}) == ["encoder_layer_0", "encoder_layer_1"]
    assert _trainable_layers(warm) == ["encoder_layer_0", "encoder_layer_1"]
    assert warm.set_unfreeze("all") and "token_embedding" in _trainable_layers(warm)
    assert warm.set_unfreeze({"encoder": 0}) == [] and not warm.backbone.trainable_weights


def test_with_lora_the_new_cross_attention_trains_in_full(tmp_path):
    ft = warm_tuner(lora_rank=2, unfreeze=0)
    ft.save(tmp_path / "lora.keras")
    for model in (ft, fk.load(tmp_path / "lora.keras")):
        paths = [w.path for w in model.backbone.trainable_weights]
        assert model.unfrozen_blocks == ["lora"]
        assert "decoder_layer_0/cross_attention/query/kernel" in paths
        assert "logit_bias/bias" in paths
        assert "decoder_layer_0/self_attention/query/kernel" not in paths  # copied: LoRA only
        assert any("self_attention/query/lora_kernel_a" in p for p in paths)


def test_saved_model_export_generates_text_from_raw_strings(tmp_path):
    import tensorflow as tf

    keras.utils.set_random_seed(2)
    ft = warm_tuner(max_target_length=4)
    sources = copy_pairs(3)[0]
    path = ft.export(tmp_path / "served", format="saved_model")
    served = tf.saved_model.load(path).signatures["serving_default"]
    out = served(texts=tf.constant(sources))
    texts = [t.decode("utf-8").strip() for t in out["text"].numpy()]
    assert texts == ft.predict_text(sources)
    ids = out["token_ids"].numpy()
    assert ids.shape[0] == 3 and (ids[:, 0] == VOCAB.index("[CLS]")).all()
