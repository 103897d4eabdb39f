"""The bad-input catalogue, issue 12: head regularisation, early stopping, text augmentation, seq2seq.

One row per case: `(id, run, error, fragment)`, as in `tests/test_bad_inputs.py`.
The same rows are in docs/errors.md ("Sequence to sequence, text augmentation and regularisation").
"""

import keras
import numpy as np
import pytest

import finetunekit as fk
from tests.catalogue import run_case, undocumented
from tests.conftest import tiny_tuner

X4 = np.zeros((4, 16, 16, 3), "uint8")
SECTION = "Sequence to sequence, text augmentation and regularisation"


def fit(**kwargs):
    return tiny_tuner().fit(X4, ["cat", "dog", "cat", "dog"], epochs=1, verbose=0, **kwargs)


def text(augment, head=None, **options):
    from tests.test_text import text_tuner

    return text_tuner(head=head, augment=augment, **options)


def fit_text(augment, x=("great film", "bad"), y=(1, 0), head=None):
    return text(augment, head).fit(list(x), list(y), epochs=1, verbose=0)


def batched_text_dataset(t):
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((["great film", "bad"], [1, 0])).batch(2)
    return text({"token_mask": 0.1}).fit(ds, epochs=1, verbose=0)


def tags_with_augmentation(t):
    return fit_text({"random_swap": 0.1}, x=[["great", "film"]], y=[["O", "B-X"]],
                    head=fk.TokenClassificationHead(2))


def mask_without_mask_token(t):
    from tests.test_text import tiny_bert

    backbone, preprocessor = tiny_bert()
    preprocessor.tokenizer.mask_token_id = None  # as for tokenizers without a mask token (GPT-2)
    return fk.FineTuner(backbone=backbone, preprocessor=preprocessor, head=fk.ClassificationHead(2),
                        augment={"token_mask": 0.1}).fit(["great film", "bad"], [1, 0], verbose=0)


def seq2seq(**options):
    from tests.test_seq2seq import seq2seq_tuner

    return seq2seq_tuner(**options)


def warm_start(**options):
    from tests.test_seq2seq_warm_start import warm_tuner

    return warm_tuner(**options)


def seq2seq_on_text_encoder(t):
    from tests.test_text import text_tuner

    return text_tuner(head=fk.Seq2SeqHead())


def classifier_on_seq2seq(t):
    from tests.test_seq2seq import tiny_bart

    backbone, preprocessor = tiny_bart()
    return fk.FineTuner(backbone=backbone, preprocessor=preprocessor, head=fk.ClassificationHead(2))


# fmt: off
CASES = [
    ("regularizer_and_l2_together", lambda t: fk.ClassificationHead(2, kernel_regularizer=keras.regularizers.L2(0.1), l2=0.1), ValueError, r"Pass either kernel_regularizer=\.\.\. or l1=/l2="),
    ("negative_l2", lambda t: fk.RegressionHead(l2=-1.0), ValueError, r"`l2` must be a number >= 0\. Received: l2=-1\.0"),
    ("unknown_regularizer_name", lambda t: fk.ClassificationHead(2, kernel_regularizer="l3"), ValueError, r"`kernel_regularizer` must be a Keras regularizer such as keras\.regularizers\.L2\(1e-4\)"),
    ("early_stopping_without_validation", lambda t: fit(early_stopping=3), ValueError, r"early_stopping=3 watches the validation loss, but this fit has no validation data\. Pass validation_split=0\.1"),
    ("early_stopping_not_a_patience", lambda t: fit(early_stopping=True), ValueError, r"`early_stopping` is the patience in epochs \(a positive int, e\.g\. early_stopping=3\) or None"),
    ("unknown_text_augmentation_keyword", lambda t: text({"random_deletion": 0.1, "synonyms": 0.1}), ValueError, r"Unknown text augmentation keyword\(s\): synonyms\. Text backbones know:\n  random_deletion: .*\n  random_swap: .*\n  token_mask: "),
    ("text_augmentation_rate_out_of_range", lambda t: text({"random_swap": 1.5}), ValueError, r"`random_swap` must be a probability in \[0, 1\) .* Received: random_swap=1\.5"),
    ("text_augmentation_on_image_backbone", lambda t: tiny_tuner(augment={"token_mask": 0.15}), ValueError, r"random_deletion, random_swap and token_mask augment text; this is an image backbone"),
    ("image_augmentation_on_text_backbone", lambda t: text("default"), ValueError, r"Image augmentation \(RandomFlip, .*\) applies to image backbones only\. A text backbone takes augment="),
    ("text_augmentation_with_word_tags", tags_with_augmentation, ValueError, r"a TokenClassificationHead has one tag per word, which edits would misalign"),
    ("token_mask_without_mask_token", mask_without_mask_token, ValueError, r"token_mask=0\.1 needs the tokenizer's mask token, but BertTokenizer has none"),
    ("text_augmentation_on_batched_dataset", batched_text_dataset, ValueError, r"Text augmentation edits the strings of an unbatched dataset; this dataset yields batches\. Pass ds\.unbatch\(\)"),
    ("seq2seq_pairs_of_unequal_count", lambda t: seq2seq(unfreeze="all").fit(["the cat", "a dog"], ["a"], verbose=0), ValueError, r"Sources and targets must pair up: 2 sources but 1 targets"),
    ("seq2seq_empty_target", lambda t: seq2seq(unfreeze="all").fit(["the cat", "a dog"], ["cat the", "  "], verbose=0), ValueError, r"1 target text\(s\) are empty \(rows \[1\]\); a Seq2SeqHead learns to generate each target\. Drop those pairs"),
    ("seq2seq_target_longer_than_max_target_length", lambda t: seq2seq(max_target_length=2).prepare(["the cat"], ["the big red dog"]), UserWarning, r"1 target\(s\) are longer than max_target_length=2 tokens .* and are truncated; raise max_target_length"),
    ("seq2seq_head_on_a_text_encoder", seq2seq_on_text_encoder, ValueError, r"This head needs a language model's next-token logits \(lm_logits\), which a text backbone \(text_encoder\) does not provide\. Use a language model"),
    ("classification_head_on_seq2seq", classifier_on_seq2seq, ValueError, r"A sequence-to-sequence backbone gives next-token logits to a fk\.Seq2SeqHead; this head needs \['features'\]"),
    ("seq2seq_empty_source", lambda t: seq2seq(unfreeze="all").fit(["the cat", " "], ["cat the", "a dog"], verbose=0), ValueError, r"1 source text\(s\) are empty \(rows \[1\]\); a Seq2SeqHead generates each target from its source\. Drop those pairs"),
    ("seq2seq_sources_not_texts", lambda t: seq2seq(unfreeze="all").fit([1, 2], ["one", "two"], verbose=0), ValueError, r"Sources must be texts; 2 of 2 are not \(source 0 is int: 1\)\. Convert them with str\(\)"),
    ("seq2seq_source_longer_than_the_encoder", lambda t: seq2seq(unfreeze="all").prepare(["the cat " * 40], ["cat the"]), UserWarning, r"1 of 1 source\(s\) are longer than the encoder's \d+ positions .* and are truncated; pass sequence_length="),
    ("seq2seq_max_length_zero", lambda t: seq2seq().predict_text(["the cat"], max_length=0), ValueError, r"`max_length` must be an int >= 1\. Received: max_length=0"),
    ("seq2seq_zero_beams", lambda t: seq2seq().predict_text(["the cat"], strategy="beam", num_beams=0), ValueError, r"`num_beams` must be an int >= 1\. Received: num_beams=0"),
    ("seq2seq_top_k_zero", lambda t: seq2seq().predict_text(["the cat"], strategy="top_k", top_k=0), ValueError, r"`top_k` must be an int >= 1\. Received: top_k=0"),
    ("seq2seq_target_of_unknown_tokens_only", lambda t: warm_start().prepare(["the cat", "a dog"], ["the cat", "ẞẞẞ"]), ValueError, r"1 target text\(s\) tokenise to nothing but unknown tokens \(rows \[1\], e\.g\. 'ẞẞẞ'\): the model would learn nothing from them"),
    ("seq2seq_targets_with_unknown_tokens", lambda t: warm_start().prepare(["the cat", "a dog"], ["the café cat", "a dog"]), UserWarning, r"1 of 2 target text\(s\) hold characters or words the tokenizer does not know .* e\.g\. row 0: 'the café cat'\. Strip accents"),
    ("seq2seq_unknown_strategy", lambda t: seq2seq().predict_text(["the cat"], strategy="nucleus"), ValueError, r"Unknown strategy 'nucleus'\. Expected one of 'greedy', 'beam', 'top_k'"),
    ("seq2seq_max_target_length_not_positive", lambda t: fk.Seq2SeqHead(max_target_length=0), ValueError, r"`max_target_length` must be a positive int \(tokens\)\. Received: max_target_length=0"),
    ("seq2seq_nothing_trains", lambda t: seq2seq().fit(["the cat"], ["cat the"], verbose=0), ValueError, r"A Seq2SeqHead has no weights of its own, and with unfreeze=0 the backbone is frozen: nothing would train\. Pass unfreeze=\"all\""),
    ("seq2seq_max_target_length_above_positions", lambda t: seq2seq(max_target_length=40, unfreeze="all").fit(["the cat"], ["cat the"], verbose=0), ValueError, r"max_target_length=40 needs 43 decoder positions \(with the start and end tokens\), but BartBackbone has 32\. Use max_target_length=29 or less"),
    ("seq2seq_without_targets", lambda t: seq2seq(unfreeze="all").fit(["the cat"], verbose=0), ValueError, r"No targets: pass y=\[target texts\]"),
]
# fmt: on


@pytest.mark.parametrize("case_id,run,error,fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input(tmp_path, case_id, run, error, fragment):
    run_case(run, error, fragment, tmp_path)


def test_rows_are_documented():
    assert undocumented([c[0] for c in CASES], SECTION) == []
