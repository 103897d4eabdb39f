"""The bad-input catalogue of warm-started seq2seq, per-part unfreezing and seq2seq export.

One row per case: `(id, run, error, fragment)`, as in `tests/test_bad_inputs.py`.
The same rows are in docs/errors.md ("Warm starts, encoder/decoder unfreezing and seq2seq export").
"""

import numpy as np
import pytest

import finetunekit as fk
from finetunekit.core.freezing import normalize_unfreeze
from tests.catalogue import run_case, undocumented
from tests.conftest import tiny_tuner

SECTION = "Warm starts, encoder/decoder unfreezing and seq2seq export"


def bart(**options):
    from tests.test_seq2seq import seq2seq_tuner

    return seq2seq_tuner(**options)


def warm_start_on_bart(t):
    from tests.test_seq2seq import tiny_bart

    backbone, preprocessor = tiny_bart()
    return fk.FineTuner(backbone=backbone, preprocessor=preprocessor,
                        head=fk.Seq2SeqHead(decoder="warm_start"))


def warm_start_on_distilbert(t):
    import keras_hub

    from tests.test_seq2seq_warm_start import VOCAB

    tokenizer = keras_hub.models.DistilBertTokenizer(vocabulary=VOCAB)
    preprocessor = keras_hub.models.DistilBertTextClassifierPreprocessor(tokenizer, sequence_length=8)
    backbone = keras_hub.models.DistilBertBackbone(
        vocabulary_size=len(VOCAB), num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16,
        max_sequence_length=16,
    )
    return fk.FineTuner(backbone=backbone, preprocessor=preprocessor,
                        head=fk.Seq2SeqHead(decoder="warm_start"))


def gradual_parts(t):
    return bart(unfreeze="all").fine_tune(["the cat"], ["cat the"], epochs=2, freeze_epochs=0,
                                          unfreeze={"decoder": 1}, gradual=True, verbose=0)


# fmt: off
CASES = [
    ("seq2seq_unknown_decoder", lambda t: fk.Seq2SeqHead(decoder="bert"), ValueError, r"Unknown decoder 'bert'\. Expected None \(the backbone's own decoder\) or \"warm_start\""),
    ("warm_start_on_an_encoder_decoder", warm_start_on_bart, ValueError, r"Seq2SeqHead\(decoder=\"warm_start\"\) builds a decoder for an encoder-only BERT backbone; BartBackbone has its own decoder\. Drop decoder="),
    ("warm_start_on_an_image_backbone", lambda t: tiny_tuner(head=fk.Seq2SeqHead(decoder="warm_start")), ValueError, r"needs a BERT-family text encoder; a image backbone \(keras_model\) cannot be warm-started"),
    ("warm_start_on_a_non_bert_encoder", warm_start_on_distilbert, ValueError, r"DistilBertBackbone is not a keras-hub BertBackbone\. Use a BERT-family checkpoint"),
    ("unfreeze_dict_unknown_part", lambda t: bart(unfreeze={"encoder": 1, "head": 1}), ValueError, r"`unfreeze` as a dict names the parts of an encoder-decoder: 'encoder', 'decoder'"),
    ("unfreeze_dict_bad_count", lambda t: bart(unfreeze={"decoder": -1}), ValueError, r"`unfreeze` must be 0 \(backbone frozen\), a number of blocks or \"all\"\. Received: unfreeze=-1"),
    ("unfreeze_dict_too_many_blocks", lambda t: bart(unfreeze={"decoder": 3}), ValueError, r"`unfreeze=\{'decoder': 3\}` but the decoder has 1 blocks\. Use a number up to 1, or \"all\""),
    ("unfreeze_dict_on_one_stack", lambda t: tiny_tuner(unfreeze={"encoder": 1}), ValueError, r"opens the encoder and decoder of an encoder-decoder \(a Seq2SeqHead's backbone\) separately; this backbone has one stack of blocks"),
    ("unfreeze_dict_gradual", gradual_parts, ValueError, r"gradual=True opens one stack of blocks at a time; unfreeze=\{'decoder': 1\} opens encoder and decoder apart\. Pass gradual=False"),
    ("seq2seq_export_tflite", lambda t: bart().export(str(t / "lite"), format="tflite"), ValueError, r"ft.export\(format=\"tflite\"\) cannot serve Seq2SeqHead: it generates .* Export format=\"saved_model\""),
]
# fmt: on


@pytest.mark.parametrize("case_id,run,error,fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input(tmp_path, case_id, run, error, fragment):
    run_case(run, error, fragment, tmp_path)


def test_rows_are_documented():
    assert undocumented([c[0] for c in CASES], SECTION) == []


def test_no_dict_reaches_a_single_stack_quietly():
    assert normalize_unfreeze({"decoder": "ALL"}) == {"encoder": 0, "decoder": "all"}
    assert np.int64(2) == normalize_unfreeze({"encoder": np.int64(2)})["encoder"]
