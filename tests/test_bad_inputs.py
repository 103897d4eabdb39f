"""A catalogue of bad (and awkward-but-valid) inputs and the exact error each gets.

One row per case: `(id, run, error, fragment)`. `run(tmp_path)` performs the
call; `error` is the exception class and `fragment` a regular expression the
message must contain. Rows with `error=None` are inputs that must work. The
same table is in docs/errors.md.
"""

import os

import keras
import numpy as np
import pytest

import finetunekit as fk
from finetunekit.core.data.images import BadImageError
from tests.catalogue import run_case, undocumented
from tests.conftest import tiny_cnn, write_images

X4 = np.zeros((4, 16, 16, 3), "uint8")
Y4 = [0, 1, 0, 1]


def tuner(head=None, **kwargs):
    return fk.FineTuner(
        tiny_cnn(), head or fk.ClassificationHead(2), preprocessing="zero_one", **kwargs
    )


def fit(x, y=None, head=None, **kwargs):
    kwargs.setdefault("epochs", 1)
    return tuner(head).fit(x, y, verbose=0, **kwargs)


def folder(tmp, counts=None):
    return write_images(str(tmp / "data"), counts or {"cat": 2, "dog": 2}, size=(16, 16))


def png(tmp, array, mode=None):
    from PIL import Image

    root = folder(tmp)
    image = Image.fromarray(array, mode) if mode else Image.fromarray(array)
    image.save(os.path.join(root, "cat", "special.png"))
    return fit(root)


def corrupt(tmp, name, data):
    root = folder(tmp)
    with open(os.path.join(root, "cat", name), "wb") as f:
        f.write(data)
    return fit(root)


def truncated_png(tmp):
    root = folder(tmp)
    good = os.path.join(root, "dog", "1.png")
    data = open(good, "rb").read()
    with open(os.path.join(root, "cat", "truncated.png"), "wb") as f:
        f.write(data[: len(data) // 2])
    return fit(root)


def empty_class_folder(tmp):
    root = folder(tmp)
    os.makedirs(os.path.join(root, "bird"))
    return fit(root, head=fk.ClassificationHead(3))


def flat_folder(tmp):
    (tmp / "flat").mkdir()
    (tmp / "flat" / "a.png").write_bytes(b"")
    return fit(str(tmp / "flat"))


def wrong_weights(tmp):
    other = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(3, 3)])
    path = str(tmp / "other.weights.h5")
    other.save_weights(path)
    return fk.FineTuner(tiny_cnn(), fk.ClassificationHead(2), weights=path)


def lambda_file(tmp):
    inputs = keras.Input((4,))
    path = str(tmp / "lambda.keras")
    keras.Model(inputs, keras.layers.Lambda(lambda t: t + 1)(inputs)).save(path)
    return fk.load(path)


def nan_dataset(tmp):
    import tensorflow as tf

    x = np.zeros((4, 16, 16, 3), "float32")
    x[1] = np.nan
    return fit(tf.data.Dataset.from_tensor_slices((x, Y4)).batch(2))


def split_dataset(tmp):
    import tensorflow as tf

    return fit(tf.data.Dataset.from_tensor_slices((X4, Y4)).batch(2), validation_split=0.5)


def text_predict(texts):
    from tests.test_text import text_tuner

    out = text_tuner(class_names=["neg", "pos"]).predict(texts, verbose=0)
    assert out.shape == (len(texts), 2) and np.isfinite(out).all()
    return out


def text_fit(**options):
    from tests.test_text import text_tuner

    return text_tuner().fit(["good", "bad"], ["pos", "neg"], verbose=0, **options)


NAN_IMAGES = np.full((2, 16, 16, 3), np.nan, "float32")
INF_IMAGES = np.full((2, 16, 16, 3), np.inf, "float32")
RAGGED = [np.zeros((16, 16, 3)), np.zeros((8, 8, 3))]

# fmt: off
CASES = [
    # ---- image files and folders
    ("corrupt_jpeg", lambda t: corrupt(t, "bad.jpg", b"\xff\xd8\xff\xe0 not a jpeg"), BadImageError, r"1 image file\(s\) could not be read:\n  .*bad\.jpg: "),
    ("truncated_png", truncated_png, BadImageError, r"truncated\.png: OSError: image file is truncated"),
    ("zero_byte_file", lambda t: corrupt(t, "empty.png", b""), BadImageError, r"empty\.png: empty file \(0 bytes\)"),
    ("missing_image_path", lambda t: tuner().predict(["photos/nothere.jpg"]), BadImageError, r"nothere\.jpg: file not found"),
    ("png_16_bit", lambda t: png(t, (np.arange(256).reshape(16, 16) * 200).astype(np.uint16)), None, None),
    ("png_4_channels_rgba", lambda t: png(t, np.full((16, 16, 4), 200, np.uint8), "RGBA"), None, None),
    ("png_grayscale", lambda t: png(t, np.full((16, 16), 90, np.uint8), "L"), None, None),
    ("class_folder_without_images", empty_class_folder, ValueError, r"Class folder\(s\) 'bird' in .* hold no images"),
    ("folder_with_one_class", lambda t: fit(folder(t, {"cat": 3})), ValueError, r"Only one class folder \('cat'\) in .*: a classifier learns from at least two classes"),
    ("folder_not_found", lambda t: fit(str(t / "missing")), FileNotFoundError, r"No such image file or folder: .*missing"),
    ("folder_without_class_subfolders", flat_folder, ValueError, r"No class sub-folders in .*flat"),
    ("labels_given_with_folder", lambda t: fit(folder(t), [0, 1, 0, 1]), ValueError, r"do not pass y with a folder"),
    ("folder_classes_differ_from_head", lambda t: fit(folder(t, {"a": 1, "b": 1, "c": 1})), ValueError, r"The data has 3 classes \(\['a', 'b', 'c'\]\) but the head has num_classes=2\. Set num_classes=3"),
    # ---- labels and targets
    ("labels_out_of_range", lambda t: fit(X4, [0, 1, 5, 1]), ValueError, r"Labels out of range: found values from 0 to 5, but num_classes=2 accepts 0\.\.1"),
    ("negative_labels", lambda t: fit(X4, [0, -1, 0, 1]), ValueError, r"Labels out of range: found values from -1 to 1"),
    ("one_class_only_in_labels", lambda t: fit(X4, ["cat"] * 4), ValueError, r"All labels are 'cat': a classifier learns from at least two classes"),
    ("float_labels_for_classifier", lambda t: fit(X4, [0.5, 1.0, 0.0, 1.0]), ValueError, r"labels are non-integer floats\. For continuous targets use fk\.RegressionHead"),
    ("nan_in_class_labels", lambda t: fit(X4, [0.0, np.nan, 1.0, 0.0]), ValueError, r"Labels contain NaN or inf values"),
    ("label_not_in_class_names", lambda t: tuner(class_names=["cat", "dog"]).fit(X4, ["cat", "dog", "bird", "cat"], verbose=0), ValueError, r"Labels \['bird'\] are not among the known classes \['cat', 'dog'\]"),
    ("one_hot_labels_for_single_label_head", lambda t: fit(X4, np.eye(2)[Y4]), ValueError, r"expects one label per example \(shape \(n,\)\); received labels of shape \(4, 2\)"),
    ("class_ids_for_multi_label_head", lambda t: fit(X4, [0, 1, 2, 0], head=fk.ClassificationHead(3, multi_label=True)), ValueError, r"expects a multi-hot matrix of shape \(n, 3\)"),
    ("string_targets_for_regression", lambda t: fit(X4, ["a", "b", "a", "b"], head=fk.RegressionHead()), ValueError, r"A RegressionHead needs numeric targets"),
    ("nan_in_regression_targets", lambda t: fit(X4, [1.0, np.nan, 2.0, 3.0], head=fk.RegressionHead()), ValueError, r"Regression targets contain NaN or inf values"),
    ("x_and_y_lengths_differ", lambda t: fit(X4, [0, 1, 0]), ValueError, r"x and y have different lengths: 4 inputs but 3 labels"),
    ("no_labels_for_fit", lambda t: fit(X4), ValueError, r"No labels: pass y="),
    # ---- in-memory images
    ("nan_in_images", lambda t: fit(NAN_IMAGES, [0, 1]), ValueError, r"The images contain NaN or inf values"),
    ("inf_in_images", lambda t: fit(INF_IMAGES, [0, 1]), ValueError, r"The images contain NaN or inf values"),
    ("nan_in_a_dataset_diverges", nan_dataset, fk.TrainingDivergedError, r"Training diverged: the loss became nan at epoch 1, (batch \d+|in batches \d+-\d+)\. Likely causes: .*learning rate"),
    ("image_rank_2", lambda t: fit(np.zeros((16, 16)), [0] * 16), ValueError, r"received an array of rank 2 with shape \(16, 16\)"),
    ("image_rank_5", lambda t: fit(np.zeros((2, 3, 16, 16, 3)), [0, 1]), ValueError, r"received an array of rank 5"),
    ("channels_first_images", lambda t: fit(np.zeros((4, 3, 16, 16)), Y4), ValueError, r"Channels-first data\? Use np\.moveaxis\(x, 1, -1\)"),
    ("five_channel_images", lambda t: fit(np.zeros((2, 16, 16, 5)), [0, 1]), ValueError, r"Images must have 1, 3 or 4 channels"),
    ("images_of_different_sizes", lambda t: fit(RAGGED, [0, 1]), ValueError, r"Images of different shapes in one list: \(8, 8, 3\), \(16, 16, 3\)\. Resize them"),
    ("empty_image_array", lambda t: fit(np.zeros((0, 16, 16, 3)), []), ValueError, r"The image array is empty \(0 images\)"),
    ("empty_list", lambda t: fit([], []), ValueError, r"No images: the input list is empty"),
    ("x_is_none", lambda t: tuner().predict(None), ValueError, r"x must be images: .* Received: None"),
    ("plain_strings_to_image_predict", lambda t: tuner().predict(["cat", "dog"]), ValueError, r"This is an image model: .* strings that are not files: \['cat', 'dog'\]"),
    ("string_array_to_image_predict", lambda t: tuner().predict(np.array(["cat", "dog"])), ValueError, r"This is an image model: .* array of strings of shape \(2,\)"),
    ("texts_to_image_model_fit", lambda t: fit(["a fine film", "bad"], ["pos", "neg"]), ValueError, r"This is an image model"),
    # ---- construction
    ("unknown_backbone", lambda t: fk.FineTuner("resnet5", fk.ClassificationHead(2), weights=None), ValueError, r'Unknown backbone "resnet5".*Did you mean "ResNet50"'),
    ("missing_weights_file", lambda t: fk.FineTuner(tiny_cnn(), fk.ClassificationHead(2), weights=str(t / "nope.weights.h5")), FileNotFoundError, r"Weights file not found: .*nope\.weights\.h5"),
    ("weights_of_wrong_shape", wrong_weights, ValueError, r"The weights in .*other\.weights\.h5' do not fit the backbone 'tiny_cnn'"),
    ("keras_layer_as_head", lambda t: fk.FineTuner(tiny_cnn(), keras.layers.Dense(2)), ValueError, r"`head` must be a finetunekit head"),
    ("num_classes_1", lambda t: fk.ClassificationHead(1), ValueError, r"`num_classes` must be >= 2 for single-label classification"),
    ("unknown_pooling", lambda t: fk.ClassificationHead(2, pooling="mean2"), ValueError, r'Unknown pooling "mean2"\. Expected one of'),
    ("unknown_augmentation_keyword", lambda t: tuner(augment={"rotate": 10}), ValueError, r"Unknown augmentation keyword\(s\): rotate\. Known keywords:"),
    ("unknown_augmentation_preset", lambda t: tuner(augment="strong"), ValueError, r'Unknown augment preset "strong"'),
    ("unknown_preprocessing", lambda t: fk.FineTuner(tiny_cnn(), fk.ClassificationHead(2), preprocessing="bgr"), ValueError, r'Unknown preprocessing mode "bgr"'),
    ("bad_mixed_precision", lambda t: tuner(mixed_precision="fp8"), ValueError, r"`mixed_precision` must be .* Received: mixed_precision='fp8'"),
    ("negative_unfreeze", lambda t: tuner(unfreeze=-1), ValueError, r"`unfreeze` must be 0 \(backbone frozen\), a number of blocks or \"all\""),
    # ---- fit arguments
    ("negative_epochs", lambda t: fit(X4, Y4, epochs=-1), ValueError, r"`epochs` must be a positive integer\. Received: epochs=-1"),
    ("zero_epochs", lambda t: fit(X4, Y4, epochs=0), ValueError, r"`epochs` must be a positive integer\. Received: epochs=0"),
    ("epochs_not_above_initial_epoch", lambda t: fit(X4, Y4, epochs=2, initial_epoch=2), ValueError, r"`epochs` \(2\) must be greater than initial_epoch \(2\)"),
    ("zero_batch_size", lambda t: fit(X4, Y4, batch_size=0), ValueError, r"`batch_size` must be a positive integer or None\. Received: batch_size=0"),
    ("batch_size_larger_than_data", lambda t: fit(X4, Y4, batch_size=64), None, None),
    ("validation_split_out_of_range", lambda t: fit(X4, Y4, validation_split=1.5), ValueError, r"`validation_split` must be in \(0, 1\)\. Received: 1\.5"),
    ("validation_labels_ids_training_names", lambda t: fit(X4, np.array(["cat", "dog"])[Y4], validation_data=(X4, Y4)), ValueError, r"The training labels are class names but the validation labels are class ids; they would be matched by position, not by meaning"),
    ("validation_split_with_dataset", split_dataset, ValueError, r"validation_split is not supported for a tf\.data\.Dataset"),
    ("unknown_on_bad_image", lambda t: fit(folder(t), on_bad_image="ignore"), ValueError, r'`on_bad_image` must be "error" or "skip"'),
    ("unknown_on_nan", lambda t: fit(X4, Y4, on_nan="ignore"), ValueError, r'`on_nan` must be "raise", "warn" or None'),
    ("balanced_class_weight_for_regression", lambda t: fit(X4, [1.0, 2.0, 3.0, 4.0], head=fk.RegressionHead(), class_weight="balanced"), ValueError, r'class_weight="balanced" needs a single-label ClassificationHead'),
    # ---- saving, loading, export
    ("load_missing_file", lambda t: fk.load(str(t / "nothere.keras")), FileNotFoundError, r"No saved model at .*nothere\.keras"),
    ("load_not_a_keras_file", lambda t: fk.load(__file__), ValueError, r'fk\.load reads "\.keras" files'),
    ("lambda_layer_in_safe_mode", lambda_file, ValueError, r"holds code \(a Lambda layer or other Python bytecode\) .* fk\.load\(path, safe_mode=False\)"),
    ("unknown_export_format", lambda t: tuner().export(str(t / "out"), format="coreml"), ValueError, r'Unknown export format "coreml"\. Expected one of "saved_model", "tflite"'),
]
# fmt: on

TEXT_CASES = [
    ("empty_strings_in_text", lambda t: text_predict(["", "good film", "", "bad"]), None, None),
    ("non_utf8_bytes_text", lambda t: text_predict([b"\xff\xfe bad \xc3", b"great film"]), None, None),
    ("very_long_text", lambda t: text_predict(["great film " * 5000, "bad"]), None, None),
    ("unknown_text_padding", lambda t: text_fit(padding="longest"), ValueError,
     "Unknown padding 'longest'. Expected one of 'dynamic', 'bucket', 'fixed', or a list of bucket"),
]


@pytest.mark.parametrize("case_id,run,error,fragment", CASES + TEXT_CASES, ids=[c[0] for c in CASES + TEXT_CASES])
def test_bad_input(tmp_path, case_id, run, error, fragment):
    run_case(run, error, fragment, tmp_path)


def test_catalogue_is_large_and_documented():
    ids = [c[0] for c in CASES + TEXT_CASES]
    assert len(ids) >= 25
    assert undocumented(ids) == []


def test_whole_catalogue_is_past_one_hundred_cases():
    """Every catalogue file together: well past 100 documented cases, no id used twice."""
    import importlib
    import pathlib

    ids = [c[0] for c in CASES + TEXT_CASES]
    modules = sorted(pathlib.Path(__file__).parent.glob("test_bad_inputs_*.py"))
    assert len(modules) >= 9
    for path in modules:
        ids += [c[0] for c in importlib.import_module(f"tests.{path.stem}").CASES]
    assert len(ids) == len(set(ids)), "a catalogue id is used twice"
    assert len(ids) >= 200 and undocumented(ids) == []
