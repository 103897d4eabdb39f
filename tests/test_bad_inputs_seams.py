"""The bad-input catalogue, part 5: heads, backbone outputs and training arguments of the task seams.

One row per case: `(id, run, error, fragment)`, as in `tests/test_bad_inputs.py`.
The same rows are in docs/errors.md ("Tasks, heads and training arguments").
"""

import numpy as np
import pytest

import finetunekit as fk
from tests.catalogue import run_case, undocumented
from tests.conftest import tiny_tuner
from tests.test_text import text_tuner

X4 = np.zeros((4, 16, 16, 3), "uint8")


def fit(**kwargs):
    return tiny_tuner().fit(X4, ["cat", "dog", "cat", "dog"], epochs=1, verbose=0, **kwargs)


def weighted_dataset_with_class_weight():
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((X4, [0, 1, 0, 1], [1.0, 2.0, 1.0, 1.0])).batch(2)
    return tiny_tuner().fit(ds, class_weight={0: 1.0, 1: 2.0}, epochs=1, verbose=0)


def pyramid_from_text(tmp):
    return text_tuner().backbone_kind.build(("features", "pyramid"))


def too_long_sequence(tmp):
    from tests.test_text import tiny_bert

    backbone, preprocessor = tiny_bert()
    return fk.FineTuner(backbone=backbone, preprocessor=preprocessor, sequence_length=64,
                        head=fk.ClassificationHead(2))


# fmt: off
CASES = [
    ("fractional_num_classes", lambda t: fk.ClassificationHead(2.7), ValueError, r"`num_classes` must be a whole number\. Received: num_classes=2\.7"),
    ("duplicate_class_names", lambda t: tiny_tuner(class_names=["cat", "cat"]), ValueError, r"`class_names` must be unique; \['cat'\] appear more than once"),
    ("pooling_on_token_head", lambda t: fk.TokenClassificationHead(3, pooling="mean"), ValueError, r"does not pool; remove pooling=\. Received: pooling='mean'"),
    ("flatten_pooling_on_sequences", lambda t: text_tuner(head=fk.ClassificationHead(2, pooling="flatten")), ValueError, r'pooling="flatten" needs features of a fixed size.*Use pooling="cls", "mean" or "max"'),
    ("pyramid_from_a_text_backbone", pyramid_from_text, ValueError, r"needs multi-scale \(pyramid\) features \(pyramid\), which a text backbone .* does not provide"),
    ("sequence_length_above_the_encoder", too_long_sequence, ValueError, r"`sequence_length=64` is longer than the encoder's 32 positions\. Pass sequence_length=32 or less"),
    ("class_weight_unknown_class_name", lambda t: fit(class_weight={"bird": 2.0}), ValueError, r"class_weight names class 'bird', which is not a class of this model \(known class names: \['cat', 'dog'\]\)"),
    ("class_weight_id_out_of_range", lambda t: fit(class_weight={5: 2.0}), ValueError, r"class_weight key 5 is not a class id in 0\.\.1"),
    ("class_weight_with_sample_weight", lambda t: fit(class_weight="balanced", sample_weight=[1.0, 2.0, 1.0, 1.0]), ValueError, r"fit\(\) received both per-example weights .* and class_weight; Keras cannot use both\. Multiply the class weights into the example weights"),
    ("class_weight_with_weighted_dataset", lambda t: weighted_dataset_with_class_weight(), ValueError, r"fit\(\) received both per-example weights \(sample_weight, or a dataset of \(x, y, sample_weight\)\) and class_weight"),
    ("sample_weight_wrong_length", lambda t: fit(sample_weight=[1.0, 2.0]), ValueError, r"`sample_weight` has 2 values but the data has 4 examples"),
    ("sample_weight_negative", lambda t: fit(sample_weight=[1.0, -1.0, 1.0, 1.0]), ValueError, r"`sample_weight` must be finite and >= 0"),
    ("export_options_for_another_format", lambda t: tiny_tuner().export(str(t / "out"), input_signature=[None]), ValueError, r"input_signature apply to Keras' own export formats .* Remove them, or pick one of Keras' formats"),
    ("task_method_of_another_head", lambda t: tiny_tuner().predict_entities([["a"]]), AttributeError, r"'FineTuner' object has no attribute 'predict_entities'"),
]
# fmt: on


@pytest.mark.parametrize("case_id,run,error,fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input(tmp_path, case_id, run, error, fragment):
    run_case(run, error, fragment, tmp_path)


def test_rows_are_documented():
    assert undocumented([c[0] for c in CASES], "Tasks, heads and training arguments") == []
