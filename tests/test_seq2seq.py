"""Sequence-to-sequence fine-tuning: a tiny random BART on generated copy/reverse tasks."""

import keras
import numpy as np
import pytest

import finetunekit as fk

WORDS = "the cat sat on mat dog ran a red blue big small".split()


def tiny_vocabulary():
    """A byte-level BPE vocabulary and merges that spell each of `WORDS` as one token."""
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 4}
    merges = []
    for word in WORDS:
        for piece in ("Ġ" + word, word):
            current = piece[0]
            vocab.setdefault(current, len(vocab))
            for char in piece[1:]:
                vocab.setdefault(char, len(vocab))
                merge = f"{current} {char}"
                if merge not in merges:
                    merges.append(merge)
                current += char
                vocab.setdefault(current, len(vocab))
    return vocab, merges


def tiny_bart(source_length=16, target_length=16):
    """A 1-layer BART with hidden size 16 and an in-memory vocabulary; `(backbone, preprocessor)`."""
    import keras_hub

    vocab, merges = tiny_vocabulary()
    tokenizer = keras_hub.models.BartTokenizer(vocabulary=vocab, merges=merges)
    preprocessor = keras_hub.models.BartSeq2SeqLMPreprocessor(
        tokenizer, encoder_sequence_length=source_length, decoder_sequence_length=target_length
    )
    backbone = keras_hub.models.BartBackbone(
        vocabulary_size=len(vocab), num_layers=1, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=32,
    )
    return backbone, preprocessor


def pairs(n, seed=0, task="reverse"):
    rng = np.random.default_rng(seed)
    sources = [" ".join(rng.choice(WORDS, rng.integers(2, 5))) for _ in range(n)]
    if task == "copy":
        return sources, list(sources)
    return sources, [" ".join(s.split()[::-1]) for s in sources]


def seq2seq_tuner(max_target_length=8, **options):
    backbone, preprocessor = tiny_bart()
    return fk.FineTuner(
        backbone=backbone, preprocessor=preprocessor,
        head=fk.Seq2SeqHead(max_target_length=max_target_length), **options,
    )


@pytest.mark.slow
def test_learns_a_reverse_task_and_generates_it_after_saving(tmp_path):
    keras.utils.set_random_seed(0)
    ft = seq2seq_tuner(unfreeze="all")
    ft.compile(learning_rate=1e-2)
    sources, targets = pairs(4)
    history = ft.fit(sources, targets, epochs=60, batch_size=4, verbose=0)
    assert history.history["loss"][-1] < 0.1 * history.history["loss"][0]
    assert ft.predict_text(sources) == targets
    assert ft.predict_text(sources, strategy="beam", num_beams=2) == targets
    assert isinstance(ft.predict_text(sources[0], strategy="top_k", top_k=2), str)
    assert ft.evaluate(sources, targets, report=True).metrics["bleu"] == pytest.approx(100.0)
    ft.save(tmp_path / "mt.keras")
    assert fk.load(tmp_path / "mt.keras").predict_text(sources) == targets


def test_generation_strategies_report_and_saved_model_take_raw_strings(tmp_path):
    keras.utils.set_random_seed(1)
    ft = seq2seq_tuner(max_target_length=4)
    sources, targets = pairs(3)
    greedy = ft.predict_text(sources)
    assert len(greedy) == 3 and all(isinstance(t, str) for t in greedy)
    assert len(ft.predict_text(sources, strategy="beam", num_beams=2)) == 3
    report = ft.evaluate(sources, targets, report=True)
    assert set(report.metrics) == {"bleu", "chrf"} and report.num_examples == 3
    ft.save(tmp_path / "mt.keras")
    assert fk.load(tmp_path / "mt.keras").predict_text(sources) == greedy


def test_batches_are_padded_per_batch_on_both_sides_and_long_targets_cut_with_a_warning():
    ft = seq2seq_tuner(max_target_length=5)
    pipeline = ft.backbone_kind.data_pipeline(ft.head)
    sources = ["the cat", "the cat sat on a mat", "dog", "a red dog ran"]
    targets = ["a", "the cat", "the big small red blue dog", "cat"]
    with pytest.warns(UserWarning, match=r"1 target\(s\) are longer than max_target_length=5"):
        prepared = pipeline.prepare(sources, targets, batch_size=2)
    x, y, weight = next(iter(prepared.train.x))
    encoder = x["encoder_padding_mask"].numpy()
    decoder = x["decoder_padding_mask"].numpy()
    assert encoder.shape[1] == encoder.sum(axis=1).max() < 16  # cut to the longest source
    assert decoder.shape[1] == decoder.sum(axis=1).max() < ft.head.max_target_length + 2
    np.testing.assert_array_equal(weight.numpy() > 0, y.numpy() != 1)  # loss skips padding


def test_reads_pairs_from_csv_tsv_and_jsonl(tmp_path):
    import pandas as pd

    sources, targets = pairs(4)
    frame = pd.DataFrame({"source": sources, "target": targets})
    frame.to_csv(tmp_path / "p.csv", index=False)
    frame.to_csv(tmp_path / "p.tsv", sep="\t", index=False)
    frame.to_json(tmp_path / "p.jsonl", orient="records", lines=True)
    for name in ("p.csv", "p.tsv", "p.jsonl"):
        assert fk.data.read_pairs(str(tmp_path / name)) == (sources, targets)


def test_text_report_scores():
    report = fk.heads.text_report(["the cat sat on the mat"], ["the cat sat on the mat"])
    assert report.metrics["bleu"] == pytest.approx(100.0)
    assert report.metrics["chrf"] == pytest.approx(100.0)


def test_lora_and_unfreeze_open_the_expected_weights():
    ft = seq2seq_tuner(lora_rank=2)
    assert ft.unfrozen_blocks == ["lora"]
    trainable = {v.path.split("/")[-1] for v in ft.trainable_variables}
    assert trainable == {"lora_kernel_a", "lora_kernel_b"}
    ft = seq2seq_tuner(unfreeze=1)
    assert ft.unfrozen_blocks == ["decoder_layer_0"]
    assert [name for name, _ in ft.backbone_kind.groups()] == [
        "stem", "encoder_layer_0", "decoder_layer_0"
    ]


def test_bucketed_pairs_keep_each_target_with_its_source_padded_to_bucket_widths():
    ft = seq2seq_tuner(max_target_length=12, unfreeze="all")
    pipeline = ft.backbone_kind.data_pipeline(ft.head)
    sources, targets = pairs(24, seed=3)
    prepared = pipeline.prepare(sources, targets, batch_size=4, shuffle=True, seed=0,
                                padding=[4, 8], training=True)  # fmt: skip
    packer = ft.backbone_kind.preprocessor
    tokenizer = packer.tokenizer

    def text(ids, mask):
        return tokenizer.detokenize(ids[mask.astype(bool)]).replace("<s>", "").replace("</s>", "")

    epochs = []
    for _ in range(2):
        seen = []
        for x, y, weight in prepared.train.x:
            x = {k: v.numpy() for k, v in x.items()}
            assert x["encoder_token_ids"].shape[1] in (4, 8, packer.encoder_sequence_length)
            assert x["decoder_token_ids"].shape[1] in (4, 8, packer.decoder_sequence_length)
            assert y.shape == weight.shape == x["decoder_token_ids"].shape
            for i in range(len(y)):
                source = text(x["encoder_token_ids"][i], x["encoder_padding_mask"][i]).strip()
                target = text(x["decoder_token_ids"][i], x["decoder_padding_mask"][i]).strip()
                seen.append((source, target))
        epochs.append(seen)
    assert sorted(epochs[0]) == sorted(zip(sources, targets))  # each pair once, still paired
    assert epochs[0] != epochs[1]  # reshuffled each epoch
    validation = pipeline.prepare(sources, targets, batch_size=4, padding="bucket").train.x
    first = next(iter(validation))[0]["encoder_padding_mask"].numpy()
    assert first.shape[1] == first.sum(axis=1).max()  # unshuffled data keeps dynamic padding
    history = ft.fit(sources, targets, epochs=1, batch_size=4, padding="bucket", verbose=0)
    assert np.isfinite(history.history["loss"][0])
