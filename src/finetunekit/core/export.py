"""Exporting a FineTuner for serving: TensorFlow SavedModel and TFLite.

The FineTuner graph already holds its preprocessing (resizing and the
backbone's normalisation), so an exported model takes raw RGB images as
float32 values in 0-255 and returns what the head serves. The inputs are the
backbone kind's `serving_signature()` (images; state vectors; raw string ids
for `fk.backbones.Embeddings`; padded waveforms for audio), and the head's
`serving_outputs` shapes what it returns: probabilities or regression values
as the model computes them, detections after NMS in the input's pixels,
class-id masks at the input's size, or a `RetrievalHead`'s top-k item ids
and scores; a head with a `serving_function` (speech to text) is served
through it instead.
"""

import contextlib
import os
import shutil
import tempfile

import keras

from finetunekit.core._keras_compat import input_structure, sublayers
from finetunekit.core.files import atomic_path, atomic_write_bytes, atomic_write_text

EXPORT_FORMATS = ("saved_model", "tflite")
#: Formats handed to `keras.Model.export` unchanged.
KERAS_FORMATS = ("tf_saved_model", "onnx", "openvino", "litert", "torch")


def export_model(ft, directory, format="saved_model", verbose=False, input_signature=None, **kwargs):
    """Exports a FineTuner on images, vectors or raw ids as a SavedModel or a TFLite file.

    - `"saved_model"`: a TensorFlow SavedModel in `directory` with a `serve`
      endpoint (and the default `serving_default` signature) taking float32
      images of shape `(batch, height, width, 3)` with any height and width
      (values 0-255, resized inside), returning the head's serving outputs
      (`head.serving_outputs`: the model's outputs for classification and
      regression; a dict of `boxes`, `scores`, `labels`, `num_detections`
      for a `DetectionHead`; `{"masks": ...}` for a `SegmentationHead`).
      When these differ from the model's outputs, a `serve_outputs`
      endpoint returns the raw outputs too. A model on vectors takes
      float32 `(batch, features)` states; a model on an
      `fk.backbones.Embeddings` backbone takes string ids, `user` (and
      `item` for pair-scoring heads), and with a `RetrievalHead` returns
      `{"items", "scores"}` of the top k (nothing excluded; an unknown
      user gets the most popular items, an unknown item its user's score).
      A model on audio takes `audio` (float32 `(batch, samples, channels)`,
      zero-padded after each clip), `audio_length` and `sample_rate` (int32
      `(batch,)`); a `SpeechToTextHead` returns `{"token_ids", "text"}` of
      greedy transcription (its `serving_function`, one graph); a
      `Seq2SeqHead` takes raw source strings (`texts`) and returns
      `{"text", "token_ids"}` of greedy generation.
    - `"tflite"`: `directory/model.tflite`, converted from the `serve`
      endpoint of a SavedModel whose input is fixed to `(batch, H, W, 3)`
      float32 at the model's input size (or the vector model's `(batch,
      features)`, or audio; raw ids, speech to text and sequence to
      sequence are refused). A mixed-precision model is converted with
      float32 compute (`float32_compute`): TFLite has no bfloat16 kernels;
      its weights are the model's float32 variables.

    A backbone kind may add formats of its own (`extra_export_formats`,
    written by its `export_format`): a causal language model exports
    `format="keras_hub"`, a keras-hub preset folder with LoRA merged.

    Class names, when known, are written to `directory/labels.txt`, one per
    line, in output order.

    Nothing is left half-written (see `finetunekit.core.files.atomic_path`): a
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
        ValueError: unknown format, a text backbone, tflite of raw ids or
            of speech to text, or `directory` is an existing file.
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
    if format in getattr(ft.backbone_kind, "extra_export_formats", ()):
        return ft.backbone_kind.export_format(ft, directory, format)  # e.g. "keras_hub" presets
    if format in KERAS_FORMATS:
        return keras.Model.export(
            ft, directory, format=format, verbose=verbose, input_signature=input_signature,
            **kwargs,
        )
    _check_format(format, input_signature, kwargs)
    # raises for backbones that cannot be served raw yet
    signature = ft.backbone_kind.serving_signature()
    directory = os.fspath(directory)
    if format == "tflite":
        signature = _fixed_signature(ft, signature)
    check_export_folder(directory, format)
    if format == "saved_model":
        with atomic_path(directory, directory=True) as temp:
            _write_saved_model(ft, temp, signature, verbose)
            _write_labels(ft, temp)
        return directory
    path = os.path.join(directory, "model.tflite")
    atomic_write_bytes(path, _tflite_flatbuffer(ft, signature, verbose))
    _write_labels(ft, directory)
    return path


def _fixed_signature(ft, signature):
    """The TFLite signature: images at the model's input size; string ids are refused."""
    import tensorflow as tf

    if ft.head.serving_function(ft) is not None:
        raise ValueError(
            f'ft.export(format="tflite") cannot serve {type(ft.head).__name__}: it generates '
            "text with the tokenizer's string ops (lookup tables, unicode joins) and a "
            "generation loop, which TFLite's builtin kernels lack. Export "
            'format="saved_model" instead: it takes raw inputs and returns token ids and text.'
        )
    if any(spec.dtype == tf.string for spec in signature.values()):
        raise ValueError(
            'format="tflite" takes numeric inputs; a model on raw ids (fk.backbones.Embeddings) '
            'exports with format="saved_model".'
        )
    if "images" not in signature:
        return signature
    height, width = ft.backbone_kind.input_shape[:2]
    return {"images": tf.TensorSpec((None, height, width, 3), tf.float32, name="images")}


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


def _tflite_flatbuffer(ft, signature, verbose):
    """Converts a SavedModel with a fixed input shape, written to a scratch folder, to TFLite."""
    import tensorflow as tf

    staging = tempfile.mkdtemp(prefix="finetunekit-export-")
    try:
        saved = os.path.join(staging, "saved_model")
        with float32_compute(ft):
            _write_saved_model(ft, saved, signature, verbose)
        converter = tf.lite.TFLiteConverter.from_saved_model(
            saved, signature_keys=["serving_default"]
        )
        try:
            return converter.convert()
        except Exception as error:  # the converter raises ConverterError and others
            raise RuntimeError(
                f"TFLite conversion failed with TensorFlow {tf.__version__}: {error}"
            ) from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def float32_compute(model):
    """Runs the layers of a mixed-precision model in float32 inside the block.

    TFLite has no bfloat16 kernels and takes float16 only as its own
    post-training option, so a TFLite export traces the model with float32
    compute; the variables of a mixed-precision model are float32 already,
    so the exported weights are the trained ones.

    Args:
        model: a Keras model.

    Example:
    ```python
    with float32_compute(ft):
        _write_saved_model(ft, folder, ft.backbone_kind.serving_signature(), False)
    ```
    """
    changed = []
    for layer in sublayers(model, include_self=True):
        policy = layer.dtype_policy
        if policy.compute_dtype in ("float16", "bfloat16") and policy.variable_dtype == "float32":
            changed.append((layer, policy))
            layer.dtype_policy = "float32"
    try:
        yield model
    finally:
        for layer, policy in changed:
            layer.dtype_policy = policy


def _write_saved_model(ft, directory, signature, verbose):
    """A SavedModel whose `serve` endpoint calls the model in inference mode.

    `keras.Model.export` calls the model without `training=False`, which
    leaves random augmentation layers (their default is training=True) active
    in the exported graph; this endpoint passes it explicitly. The inputs are
    the backbone kind's `serving_signature()` (one tensor, or named inputs for
    a model on a dict); the head's `serving_outputs` shapes what it returns,
    given the raw images' size. A head that overrides `serving_outputs` also
    gets a `serve_outputs` endpoint with the model's own outputs.
    """
    import tensorflow as tf

    from finetunekit.core.head import Head

    names = list(signature)
    takes_dict = isinstance(input_structure(ft), dict)
    generate = ft.head.serving_function(ft)  # heads that generate in the graph

    def model_outputs(*tensors):
        return ft(dict(zip(names, tensors)) if takes_dict else tensors[0], training=False)

    def serve(*tensors):
        if generate is not None:
            return generate(dict(zip(names, tensors)), training=False)
        size = tf.shape(tensors[0])[1:3] if names == ["images"] else None
        return ft.head.serving_outputs(ft, model_outputs(*tensors), size)

    specs = list(signature.values())
    archive = keras.export.ExportArchive()
    archive.track(ft)
    for resource in ft.head.serving_resources(ft):
        archive.track(resource)
    archive.add_endpoint(name="serve", fn=serve, input_signature=specs)
    if generate is None and type(ft.head).serving_outputs is not Head.serving_outputs:
        archive.add_endpoint(name="serve_outputs", fn=model_outputs, input_signature=specs)
    archive.write_out(directory, verbose=verbose)


def _write_labels(ft, directory):
    if ft.class_names:
        text = "\n".join(str(n) for n in ft.class_names) + "\n"
        atomic_write_text(os.path.join(directory, "labels.txt"), text)
