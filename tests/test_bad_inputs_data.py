"""The bad-input catalogue, part 3: data, models and training arguments (issue 9).

One row per case: `(id, run, error, fragment)`, as in `tests/test_bad_inputs.py`.
`run(tmp_path)` performs the call; `error` is the exception (or, for a
warning, the warning class, turned into an error for the row) and `fragment`
a regular expression the message must contain: what is wrong, what was
received and the fix. Rows with `error=None` are documented conversions:
`run` asserts the converted result itself. The same rows are in
docs/errors.md ("Data, models and training arguments (issue 9)").
"""

import os
import warnings
from unittest import mock

import keras
import numpy as np
import pytest

import finetunekit as fk
from finetunekit.core.data.images import BadImageError, as_image_array
from tests.catalogue import run_case, undocumented
from tests.conftest import tiny_cnn, tiny_tuner, write_images

X4 = np.random.default_rng(0).integers(0, 255, (4, 16, 16, 3)).astype("uint8")
Y4 = [0, 1, 0, 1]
TEXTS = ["great film", "dull movie", "what a ride", "bad"]


def fit(x, y=None, ft=None, **kwargs):
    kwargs.setdefault("epochs", 1)
    return (ft or tiny_tuner()).fit(x, y, verbose=0, **kwargs)


def as_error(category, run):
    """Runs `run` with warnings of `category` raised, so a row can check the message."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", category)
        return run()


def dataset(x, y=None, batch=2):
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices(x if y is None else (x, y))
    return ds if batch is None else ds.batch(batch)


def text_tuner():
    from tests.test_text import text_tuner as make

    return make()


# ---- in-memory images: one image, dtypes
def one_image(tmp):
    ft = tiny_tuner(class_names=["cat", "dog"])
    labels = ft.predict_labels(X4[0])  # (16, 16, 3): ONE image, not 16 grayscale ones
    assert len(labels) == 1 and labels[0] in ("cat", "dog")
    np.testing.assert_allclose(ft.predict(X4[0], verbose=0), ft.predict(X4[:1], verbose=0))


def grayscale_batch(tmp):
    gray = X4[..., 0][:, :, :10]  # (4, 16, 10): last axis not 1, 3 or 4
    assert as_image_array(gray).shape == (4, 16, 10, 1)
    assert tiny_tuner().predict(gray, verbose=0).shape == (4, 2)


def same_predictions(converted, reference):
    ft = tiny_tuner()
    np.testing.assert_allclose(
        ft.predict(converted, verbose=0), ft.predict(reference, verbose=0), rtol=1e-5, atol=1e-6
    )


def uint16_images(tmp):
    sixteen = X4.astype("uint16") * 257  # 255 -> 65535
    np.testing.assert_allclose(as_image_array(sixteen), X4)
    same_predictions(sixteen, X4)


def bool_images(tmp):
    mask = X4 > 127
    assert as_image_array(mask).max() == 255
    same_predictions(mask, mask.astype("uint8") * 255)


# ---- texts
def text_fit(x, y=None, **kwargs):
    return text_tuner().fit(x, y, epochs=1, batch_size=2, verbose=0, **kwargs)


def image_paths_to_text_model(tmp):
    root = write_images(str(tmp / "images"), {"cat": 2}, size=(8, 8))
    paths = sorted(os.path.join(root, "cat", f) for f in os.listdir(os.path.join(root, "cat")))
    return text_tuner().predict(paths, verbose=0)


def text_dataframe(column="text", **kwargs):
    import pandas as pd

    texts = ["great film", None, "bad", "fun"] if column == "gap" else TEXTS
    return text_fit(pd.DataFrame({"text": texts, "label": ["pos", "neg"] * 2}), **kwargs)


# ---- image files
def special_file(tmp, name, save):
    from PIL import Image

    root = write_images(str(tmp / "data"), {"cat": 2, "dog": 2}, size=(16, 16))
    save(Image.fromarray(X4[0]), os.path.join(root, "cat", name))
    return fit(root)


# ---- tf.data
def nan_validation(tmp, on_nan="raise"):
    bad = np.full((4, 16, 16, 3), np.nan, "float32")
    return fit(X4, Y4, validation_data=dataset(bad, Y4), on_nan=on_nan)


def text_dataset(labels, batch=None):
    return text_tuner().fit(dataset(TEXTS, labels, batch), epochs=1, verbose=0)


# ---- backbones and weights
def imagenet_offline(tmp):
    def no_network(fname, origin=None, **kwargs):
        raise Exception(  # what keras.utils.get_file raises offline
            f"URL fetch failure on {origin}: None -- [Errno -3] Temporary failure in name resolution"
        )

    with mock.patch("keras.src.utils.file_utils.get_file", no_network):
        return fk.FineTuner(
            "MobileNetV3Small", fk.ClassificationHead(2), weights="imagenet", input_shape=(32, 32, 3)
        )


def lambda_file(tmp):
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Lambda(lambda t: t / 255.0)(inputs)
    path = str(tmp / "lambda.keras")
    keras.Model(inputs, keras.layers.Conv2D(4, 3)(x), name="lambda_cnn").save(path)
    return path


# ---- DataFrames
def image_frame(tmp, paths=None, labels=None):
    import pandas as pd

    root = write_images(str(tmp / "data"), {"cat": 2, "dog": 2}, size=(16, 16))
    files = [os.path.join(root, c, f) for c in ("cat", "dog") for f in ("0.jpg", "1.png")]
    labels = labels or ["cat", "cat", "dog", "dog"]
    return pd.DataFrame({"filename": paths or files, "label": labels})


def nan_paths(tmp):
    frame = image_frame(tmp)
    frame.loc[[1, 3], "filename"] = [None, np.nan]
    return fit(frame)


def missing_labels(tmp):
    frame = image_frame(tmp)
    frame.loc[2, "label"] = np.nan
    return fit(frame)


# fmt: off
CASES = [
    # ---- in-memory images (silent wrong results before)
    ("one_image_hwc_to_predict", one_image, None, None),
    ("grayscale_batch_stays_a_batch", grayscale_batch, None, None),
    ("uint16_images_converted", uint16_images, None, None),
    ("bool_images_converted", bool_images, None, None),
    ("zero_one_float_images", lambda t: fit(X4 / 255.0, Y4), ValueError, r"The images are float64 values all within \[0, 1\] \(from 0 to 0\.99\d*\), but the model expects 0-255 pixel values .* Pass x \* 255"),
    # ---- a text model given things that are not texts
    ("image_array_to_text_model", lambda t: text_tuner().predict(X4, verbose=0), ValueError, r"This is a text model: x must be texts .* received a numeric array of shape \(4, 16, 16, 3\)\. Pass texts; for images use an image backbone"),
    ("image_paths_to_text_model", image_paths_to_text_model, ValueError, r"This is a text model, but x holds paths of image files \('.*0\.jpg', '.*1\.png'; positions \[0, 1\]\)\. Pass texts"),
    ("none_and_nan_texts", lambda t: text_fit(["good", None, "bad", float("nan")], ["pos", "neg"] * 2), ValueError, r"Texts at positions \[1, 3\] are None or NaN \(2 of 4\); a text model would read them as the words 'None' or 'nan'\. Drop them, or replace them with \"\""),
    ("nan_text_in_dataframe", lambda t: text_dataframe("gap"), ValueError, r"1 row\(s\) of the DataFrame have no text in column 'text' \(NaN or None\): rows \[1\]\. Drop them with df\.dropna\(subset=\['text'\]\)"),
    ("misspelt_text_column", lambda t: text_dataframe(x_col="txt"), ValueError, r"No text column 'txt' in the DataFrame \(columns: \['text', 'label'\]\)\. Name one of these columns with x_col=\."),
    # ---- training arguments
    ("gradient_accumulation_steps_0", lambda t: tiny_tuner().compile(gradient_accumulation_steps=0), ValueError, r"`gradient_accumulation_steps` must be a whole number >= 1: .* Received: gradient_accumulation_steps=0"),
    ("negative_learning_rate", lambda t: tiny_tuner().compile(learning_rate=-1), ValueError, r"`learning_rate` must be a number > 0 .* Received: learning_rate=-1"),
    ("zero_learning_rate", lambda t: tiny_tuner().compile(learning_rate=0.0), ValueError, r"`learning_rate` must be a number > 0 .* Received: learning_rate=0\.0"),
    ("zero_fine_tune_learning_rate", lambda t: tiny_tuner().fine_tune(X4, Y4, fine_tune_learning_rate=0), ValueError, r"`fine_tune_learning_rate` must be a number > 0 .* Received: fine_tune_learning_rate=0"),
    ("nan_val_loss", nan_validation, fk.TrainingDivergedError, r"Training diverged: the validation loss \(val_loss\) became nan at epoch 1 \(the training loss was [\d.]+\)\. Likely causes: \(1\) NaN/inf values or bad labels in the validation data"),
    ("nan_val_loss_with_on_nan_warn", lambda t: as_error(RuntimeWarning, lambda: nan_validation(t, "warn")), RuntimeWarning, r"the validation loss \(val_loss\) became nan at epoch 1 .* Training stopped\. Restored the weights and optimizer state from the start of epoch 1"),
    # ---- image files Pillow reads but TensorFlow cannot
    ("tiff_named_png", lambda t: special_file(t, "tiff.png", lambda im, p: im.save(p, format="TIFF")), BadImageError, r"tiff\.png: a TIFF image \(mode RGB\) that Pillow reads but TensorFlow's decoder, which training uses, cannot \(Unknown image file format.*\)\. Convert it to PNG or JPEG"),
    ("one_bit_bmp", lambda t: special_file(t, "mask.bmp", lambda im, p: im.convert("1").save(p)), BadImageError, r"mask\.bmp: a BMP image \(mode 1\) that Pillow reads but TensorFlow's decoder, which training uses, cannot \(Number of channels"),
    # ---- tf.data input
    ("unbatched_image_dataset", lambda t: fit(dataset(X4, Y4, batch=None)), ValueError, r"The tf\.data\.Dataset yields single images of shape \(16, 16, 3\), not batches; .* Batch it first: ds\.batch\(32\)"),
    ("labels_out_of_range_in_dataset", lambda t: fit(dataset(X4, [0, 5, 0, 1])), ValueError, r"In the first batch of the tf\.data\.Dataset: Labels out of range: found values from 0 to 5, but num_classes=2 accepts 0\.\.1"),
    ("string_labels_in_dataset", lambda t: fit(dataset(X4, ["cat", "dog"] * 2)), ValueError, r"The tf\.data\.Dataset yields string labels .*; Keras trains on class ids\. Map them to ids in the dataset, e\.g\. lookup = keras\.layers\.StringLookup"),
    ("string_labels_in_text_dataset", lambda t: text_dataset(["pos", "neg"] * 2), ValueError, r"The tf\.data\.Dataset yields string labels"),
    ("labels_out_of_range_in_text_dataset", lambda t: text_dataset([7, 1, 0, 1]), ValueError, r"In the first batch of the tf\.data\.Dataset: Labels out of range: found values from 7 to 7, but num_classes=2"),
    # ---- backbones, weights, loss
    ("imagenet_download_fails_offline", imagenet_offline, ConnectionError, r"Could not download the ImageNet weights of MobileNetV3Small \(weights=\"imagenet\"\): no network.* \(1\) pass weights=None .* \(2\) pass weights=\"path/to/mobilenetv3small\.weights\.h5\", .* keeping the name '([^']+\.h5)', to '.*models[/\\]\1'"),
    ("mse_loss_for_classification", lambda t: tiny_tuner().compile(loss="mse"), ValueError, r"loss='mse' is a regression loss, but a ClassificationHead outputs class probabilities \(softmax\) .* Use loss=\"auto\" \(this head's default, keras\.losses\.SparseCategoricalCrossentropy\)"),
    ("mean_squared_error_loss_for_classification", lambda t: tiny_tuner().compile(loss="mean_squared_error"), ValueError, r"loss='mean_squared_error' is a regression loss"),
    ("mse_loss_object_for_classification", lambda t: tiny_tuner().compile(loss=keras.losses.MeanSquaredError()), ValueError, r"loss=MeanSquaredError\(\) is a regression loss"),
    ("lambda_layer_in_backbone_file", lambda t: fk.FineTuner(lambda_file(t), fk.ClassificationHead(2)), ValueError, r"lambda\.keras' holds code \(a Lambda layer or other Python bytecode\) that Keras safe mode will not run\. FineTuner loads backbone files in safe mode and takes no safe_mode argument\. .* model = keras\.saving\.load_model\(path, safe_mode=False\), then FineTuner\(backbone=model, \.\.\.\)"),
    ("lambda_layer_in_weights_file", lambda t: fk.FineTuner(tiny_cnn(), fk.ClassificationHead(2), weights=lambda_file(t)), ValueError, r"FineTuner loads weights files in safe mode .* keras\.saving\.load_model\(path, safe_mode=False\), then model\.save_weights"),
    # ---- augmentation keywords in ImageDataGenerator's terms
    ("zoom_range_out_of_range", lambda t: tiny_tuner(augment={"zoom_range": 5}), ValueError, r"`zoom_range` must be a number z in \[0, 1\) \(scales from 1-z to 1\+z; e\.g\. 0\.2\) or a pair \[low, high\] of positive scales .* Received: zoom_range=5"),
    ("negative_rotation_range", lambda t: tiny_tuner(augment={"rotation_range": -10}), ValueError, r"`rotation_range` must be a maximum rotation in degrees, a number in \[0, 180\] .* Received: rotation_range=-10"),
    ("shift_range_in_pixels", lambda t: tiny_tuner(augment={"width_shift_range": 20}), ValueError, r"`width_shift_range` must be a fraction of the image width, a number in \[0, 1\) .* For a shift in pixels, divide it by the width\. Received: width_shift_range=20"),
    # ---- DataFrames
    ("nan_path_in_dataframe", nan_paths, ValueError, r"2 row\(s\) of the DataFrame have no image path in column 'filename' \(NaN or None\): rows \[1, 3\]\. Drop them with df\.dropna\(subset=\['filename'\]\)"),
    ("missing_label_in_dataframe", missing_labels, ValueError, r"1 row\(s\) of the DataFrame have no label in column 'label' \(NaN or None\): rows \[2\]"),
    ("misspelt_y_col", lambda t: fit(image_frame(t), y_col="lable"), ValueError, r"No label column 'lable' in the DataFrame \(columns: \['filename', 'label'\]\)\. Name one of these columns with y_col= \(or y=\)\."),
    ("misspelt_label_column_as_y", lambda t: fit(image_frame(t), "Label"), ValueError, r"No label column 'Label' in the DataFrame \(columns: \['filename', 'label'\]\)"),
]
# fmt: on


@pytest.mark.parametrize("case_id,run,error,fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input(tmp_path, case_id, run, error, fragment):
    run_case(run, error, fragment, tmp_path)


def test_rows_are_documented():
    assert undocumented([c[0] for c in CASES], "Data, models and training arguments (issue 9)") == []
