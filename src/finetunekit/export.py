"""Exporting a FineTuner for serving: TensorFlow SavedModel and TFLite.

The FineTuner graph already holds its preprocessing (resizing and the
backbone's normalisation), so an exported model takes raw RGB images as
float32 values in 0-255 and returns probabilities (or regression values).
"""

import os
import shutil
import tempfile

import keras

from finetunekit.files import atomic_path, atomic_write_bytes, atomic_write_text

EXPORT_FORMATS = ("saved_model", "tflite")
#: Formats handed to `keras.Model.export` unchanged.
KERAS_FORMATS = ("tf_saved_model", "onnx", "openvino", "litert", "torch")


def export_model(ft, directory, format="saved_model", verbose=False, input_signature=None, **kwargs):
    """Exports an image FineTuner as a SavedModel or a TFLite file.

    - `"saved_model"`: a TensorFlow SavedModel in `directory` with a `serve`
      endpoint (and the default `serving_default` signature) taking float32
      images of shape `(batch, height, width, 3)` with any height and width
      (values 0-255, resized inside), returning the model's outputs. A
      backbone kind with its own `write_saved_model` writes its own graph
      (sequence to sequence: raw source strings in, generated text out).
    - `"tflite"`: `directory/model.tflite`, converted from a SavedModel
      whose input is fixed to `(batch, H, W, 3)` float32 at the model's
      input size.

    Class names, when known, are written to `directory/labels.txt`, one per
    line, in output order.

    Nothing is left half-written (see `finetunekit.files.atomic_path`): a
    SavedModel is written to a temporary folder beside `directory` and
    renamed onto it (replacing an earlier export there), and `model.tflite`
    and `labels.txt` each replace their previous version in one step.

    Args:
        ft: a `fk.FineTuner` with an image backbone.
        directory: str. Output folder (created). For a SavedModel it must be
            new, empty, or an earlier SavedModel export (replaced).
        format: `"saved_model"` or `"tflite"`. Defaults to `"saved_model"`.
        verbose: bool. Let Keras and the converter print. Defaults to `False`.

    Returns:
        The path of the artifact: the SavedModel folder or the `.tflite` file.

    Raises:
        ValueError: unknown format, a text backbone, or `directory` is an
            existing file.
        FileExistsError: a SavedModel export to a folder holding other files.
        RuntimeError: the TFLite converter failed (its message is included).

    Example:
    ```python
    ft.export("export/animals", format="saved_model")
    served = tf.saved_model.load("export/animals")
    probs = served.serve(tf.constant(images, tf.float32))
    ft.export("export/animals_lite", format="tflite")
    ```
    """
    if format in KERAS_FORMATS:
        return keras.Model.export(
            ft, directory, format=format, verbose=verbose, input_signature=input_signature,
            **kwargs,
        )
    _check_format(format, input_signature, kwargs)
    writer = getattr(ft.backbone_kind, "write_saved_model", None)  # kinds with their own graph
    if writer is None:
        ft.backbone_kind.serving_signature()  # raises for backbones that cannot be served raw yet
    elif format != "saved_model":
        raise ValueError(
            f'format="{format}" cannot hold the generation loop of a {ft.backbone_kind.name} '
            'backbone (TFLite has no keras-hub samplers). Export format="saved_model": its '
            "serve(texts) signature takes raw strings and returns generated text."
        )
    directory = os.fspath(directory)
    check_export_folder(directory, format)
    if format == "saved_model":
        with atomic_path(directory, directory=True) as temp:
            if writer is None:
                _write_saved_model(ft, temp, (None, None, None, 3), verbose)
            else:
                writer(ft, temp, verbose)
            _write_labels(ft, temp)
        return directory
    height, width = ft.backbone_kind.input_shape[:2]
    path = os.path.join(directory, "model.tflite")
    atomic_write_bytes(path, _tflite_flatbuffer(ft, (None, height, width, 3), verbose))
    _write_labels(ft, directory)
    return path


def _check_format(format, input_signature, kwargs):
    if format not in EXPORT_FORMATS:
        known = ", ".join(f'"{name}"' for name in EXPORT_FORMATS + KERAS_FORMATS)
        raise ValueError(
            f'Unknown export format "{format}". Expected one of {known}. Received: format={format!r}'
        )
    if input_signature is not None or kwargs:
        given = ["input_signature"] * (input_signature is not None) + sorted(kwargs)
        raise ValueError(
            f"{', '.join(given)} apply to Keras' own export formats ({', '.join(KERAS_FORMATS)}); "
            f'format="{format}" serves the raw inputs of the backbone\'s serving signature. '
            "Remove them, or pick one of Keras' formats."
        )


def check_export_folder(directory, format):
    """Refuses an export target that is a file, or a non-export folder a SavedModel would replace.

    Args:
        directory: str. The export folder.
        format: `"saved_model"` or `"tflite"`.

    Raises:
        ValueError: `directory` is an existing file.
        FileExistsError: a SavedModel would replace a folder holding other files.

    Example:
    ```python
    check_export_folder("export/animals", "saved_model")
    ```
    """
    if os.path.lexists(directory) and not os.path.isdir(directory):
        hint = (
            f" To write a .keras file, use ft.save({directory!r})."
            if directory.endswith(".keras")
            else ""
        )
        raise ValueError(
            f"export() writes a folder, but {directory!r} is an existing file. Pass the path "
            f"of a new folder, e.g. {os.path.splitext(directory)[0] + '_export'!r}.{hint}"
        )
    if format != "saved_model" or not os.path.isdir(directory) or not os.listdir(directory):
        return
    if not os.path.exists(os.path.join(directory, "saved_model.pb")):
        raise FileExistsError(
            f'export(format="saved_model") replaces the whole folder {directory!r}, which '
            "holds other files (it is not an earlier SavedModel export). Export to a new or "
            "empty folder."
        )


def _tflite_flatbuffer(ft, shape, verbose):
    """Converts a SavedModel with a fixed input shape, written to a scratch folder, to TFLite."""
    import tensorflow as tf

    staging = tempfile.mkdtemp(prefix="finetunekit-export-")
    try:
        saved = os.path.join(staging, "saved_model")
        _write_saved_model(ft, saved, shape, verbose)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        try:
            return converter.convert()
        except Exception as error:  # the converter raises ConverterError and others
            raise RuntimeError(
                f"TFLite conversion failed with TensorFlow {tf.__version__}: {error}"
            ) from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_saved_model(ft, directory, shape, verbose):
    """A SavedModel whose `serve` endpoint calls the model in inference mode.

    `keras.Model.export` calls the model without `training=False`, which
    leaves random augmentation layers (their default is training=True) active
    in the exported graph; this endpoint passes it explicitly.
    """
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(ft)
    archive.add_endpoint(
        name="serve",
        fn=lambda images: ft(images, training=False),
        input_signature=[tf.TensorSpec(shape, tf.float32, name="images")],
    )
    archive.write_out(directory, verbose=verbose)


def _write_labels(ft, directory):
    if ft.class_names:
        text = "\n".join(str(n) for n in ft.class_names) + "\n"
        atomic_write_text(os.path.join(directory, "labels.txt"), text)
