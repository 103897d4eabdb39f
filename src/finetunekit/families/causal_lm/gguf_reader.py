"""Reading GGUF files with the optional `gguf` package: errors, metadata, dequantising."""

import os

import numpy as np


def _import_gguf():
    try:
        import gguf
    except ImportError as error:
        raise ImportError(
            "Reading a .gguf checkpoint needs the `gguf` package, which is not installed. "
            "Install it with `pip install gguf` (or `pip install finetunekit[llm]`)."
        ) from error
    return gguf


def _field_value(reader, key, default=None):
    field = reader.fields.get(key)
    if field is None:
        return default
    value = field.contents()
    if isinstance(value, np.generic):
        value = value.item()
    return value


def _scalar_fields(reader):
    """All metadata except the big per-token arrays, as plain Python values."""
    skipped = {
        "tokenizer.ggml.tokens",
        "tokenizer.ggml.token_type",
        "tokenizer.ggml.merges",
        "tokenizer.ggml.scores",
    }
    values = {}
    for key, field in reader.fields.items():
        if key in skipped or key.startswith("GGUF."):
            continue
        try:
            values[key] = field.contents()
        except Exception:  # an exotic field type: keep the loader going
            continue
    return values


def _open_reader(path):
    gguf = _import_gguf()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"No GGUF file at {path!r}. Pass the path of an existing .gguf checkpoint."
        )
    with open(path, "rb") as file:
        magic = file.read(4)
    if magic != b"GGUF":
        raise ValueError(
            f"{path!r} is not a GGUF file: it starts with {magic!r}, not the GGUF magic "
            "b'GGUF'. Pass a .gguf checkpoint (llama.cpp's format); for safetensors or "
            "Keras files use keras_hub's from_preset or keras.saving.load_model instead."
        )
    try:
        reader = gguf.GGUFReader(path, "r")
    except Exception as error:
        raise ValueError(
            f"{path!r} is a truncated or damaged GGUF file ({type(error).__name__}: {error}). "
            "Download or convert the checkpoint again."
        ) from error
    for tensor in reader.tensors:
        if tensor.data.nbytes != int(tensor.n_bytes):
            raise ValueError(
                f"{path!r} is truncated: tensor {tensor.name!r} should hold "
                f"{int(tensor.n_bytes)} bytes but the file holds {tensor.data.nbytes}. "
                "Download or convert the checkpoint again."
            )
    return reader


def _dequantize(gguf, path, tensor):
    """A tensor as a float32 array in GGUF's row-major order, e.g. (out, in) for a matrix."""
    try:
        array = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
    except NotImplementedError as error:
        raise ValueError(
            f"{path!r}: tensor {tensor.name!r} uses quantisation "
            f"{tensor.tensor_type.name}, which the installed gguf package cannot dequantise "
            f"({error}). Upgrade gguf (`pip install -U gguf`) or convert the checkpoint to "
            "F16, Q8_0 or Q4_1."
        ) from error
    shape = tuple(int(d) for d in reversed(tensor.shape))
    return np.asarray(array, dtype="float32").reshape(shape)
