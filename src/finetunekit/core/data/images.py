"""Image data: arrays, `tf.data`, class folders, path lists and DataFrames.

Everything becomes either `(array, labels)` for Keras' own array pipeline or a
batched, prefetched `tf.data.Dataset` that decodes and resizes in parallel.
Unreadable image files are found up front and reported by path.
"""

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from finetunekit.core.data.constants import IMAGE_EXTENSIONS, LABEL_COLUMNS
from finetunekit.core.data.frames import column_values, find_column
from finetunekit.core.notices import warn_user

PATH_COLUMNS = ("path", "filepath", "file", "filename", "image", "image_path")


class BadImageError(ValueError):
    """Raised when image files cannot be read; `paths` lists them with reasons."""

    def __init__(self, bad):
        self.paths = bad
        lines = "\n".join(f"  {path}: {reason}" for path, reason in bad[:20])
        more = f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""
        super().__init__(
            f"{len(bad)} image file(s) could not be read:\n{lines}{more}\n"
            'Fix or remove them, or pass on_bad_image="skip" to leave them out with a warning.'
        )


def is_path(value):
    return isinstance(value, (str, os.PathLike))


def list_image_folder(directory):
    """Lists a folder with one sub-folder per class.

    Args:
        directory: str. The folder.

    Returns:
        `(paths, labels, class_names)`: file paths, their class names and the
        sorted class names.

    Raises:
        FileNotFoundError: the folder does not exist.
        ValueError: no class sub-folders, a class folder without images, or
            no images at all.
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"Image folder not found: {directory!r}")
    class_names = sorted(
        d for d in os.listdir(directory)
        if os.path.isdir(os.path.join(directory, d)) and not d.startswith(".")
    )
    if not class_names:
        raise ValueError(
            f"No class sub-folders in {directory!r}. Expected one sub-folder per class, "
            "e.g. photos/cat/1.jpg, photos/dog/2.jpg."
        )
    paths, labels, empty = [], [], []
    for name in class_names:
        found = []
        for root, _, files in os.walk(os.path.join(directory, name)):
            found += [
                os.path.join(root, f) for f in sorted(files)
                if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith(".")
            ]
        if not found:
            empty.append(name)
        paths += sorted(found)
        labels += [name] * len(found)
    if empty:
        raise ValueError(
            f"Class folder(s) {', '.join(repr(e) for e in empty)} in {directory!r} hold no "
            f"images (looked for {', '.join(IMAGE_EXTENSIONS)}). Add images or remove the folder."
        )
    return paths, labels, class_names


def decode_image(data, channels):
    """Decodes image bytes as training does: `tf.io.decode_image`, first frame, `channels` channels.

    Args:
        data: a scalar string tensor of file bytes.
        channels: int. 3 (RGB) or 1.

    Returns:
        A uint8 tensor of shape `(height, width, channels)`.
    """
    import tensorflow as tf

    return tf.io.decode_image(data, channels=channels, expand_animations=False)


def _check_one(path):
    """Why `path` cannot be read in training, or None.

    Pillow reads it first (its reasons name truncation and corruption), then
    the decoder training uses: files Pillow reads but TensorFlow cannot (a
    TIFF named .png, a 1-bit BMP) are reported here, not mid-epoch.
    """
    from PIL import Image

    try:
        if os.path.getsize(path) == 0:
            return "empty file (0 bytes)"
        with Image.open(path) as image:
            image.load()
            found = f"a {image.format} image (mode {image.mode})"
    except FileNotFoundError:
        return "file not found"
    except Exception as error:  # PIL raises many types for corrupt data
        return f"{type(error).__name__}: {error}"
    return _check_tensorflow_decodes(path, found)


def _check_tensorflow_decodes(path, found):
    import tensorflow as tf

    try:
        with open(path, "rb") as handle:
            decode_image(tf.constant(handle.read()), 3)
        return None
    except tf.errors.OpError as error:
        reason = error.message.split("}}")[-1].split("[Op:")[0].strip()
        return (
            f"{found} that Pillow reads but TensorFlow's decoder, which training uses, "
            f"cannot ({reason}). Convert it to PNG or JPEG, e.g. "
            'PIL.Image.open(path).convert("RGB").save("image.png")'
        )


def check_images(paths, on_bad_image="error"):
    """Decodes every file up front and reports those that would fail in training.

    Each file is decoded with Pillow (for precise reasons) and with
    `tf.io.decode_image`, the decoder of the training pipeline.

    Args:
        paths: list of str.
        on_bad_image: `"error"` raises `BadImageError`; `"skip"` warns and
            returns a mask without them.

    Returns:
        A boolean numpy mask of readable files.
    """
    if on_bad_image not in ("error", "skip"):
        raise ValueError(
            f'`on_bad_image` must be "error" or "skip". Received: {on_bad_image!r}'
        )
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) * 2)) as pool:
        reasons = list(pool.map(_check_one, paths))
    bad = [(p, r) for p, r in zip(paths, reasons, strict=True) if r is not None]
    if bad and on_bad_image == "error":
        raise BadImageError(bad)
    if bad:
        warn_user(
            f"Skipping {len(bad)} unreadable image file(s): "
            + ", ".join(p for p, _ in bad[:10]) + (" ..." if len(bad) > 10 else ""),
        )
    return np.asarray([r is None for r in reasons], dtype=bool)


def as_image_array(x):
    """Checks in-memory images and returns a batch with a channel axis and 0-255 values.

    Accepts a batch `(n, h, w, c)` with c in 1, 3, 4, a grayscale batch
    `(n, h, w)`, or ONE image `(h, w, c)`: a 3-D array whose last axis is 1, 3
    or 4 is one image (a grayscale batch of 1-, 3- or 4-pixel-wide images is
    not worth the ambiguity). Pixel values are converted per dtype (see
    `to_pixel_range`).

    Args:
        x: an array, a list of equally sized arrays, or a nested list.

    Returns:
        A numpy array of shape `(n, h, w, c)` holding 0-255 values.

    Raises:
        ValueError: for other ranks, channel counts, strings, empty or
            non-finite data and 0-1 floats, with what was received.
    """
    if isinstance(x, (list, tuple)) and x and all(hasattr(i, "shape") for i in x):
        shapes = sorted({tuple(i.shape) for i in x})
        if len(shapes) > 1:
            shown = ", ".join(str(s) for s in shapes[:4]) + (", ..." if len(shapes) > 4 else "")
            raise ValueError(
                f"Images of different shapes in one list: {shown}. Resize them to one size, "
                "or pass file paths (they are resized when read)."
            )
    x = np.asarray(x)
    _check_not_strings(x)
    if x.ndim == 3:
        x = x[None] if x.shape[-1] in (1, 3, 4) else x[..., None]
    if x.ndim != 4:
        raise ValueError(
            f"Expected a batch of images of shape (n, height, width, channels) or "
            f"(n, height, width), or one image (height, width, channels); received an array "
            f"of rank {x.ndim} with shape {x.shape}. For one grayscale image use image[None]."
        )
    if x.shape[-1] not in (1, 3, 4):
        raise ValueError(
            f"Images must have 1, 3 or 4 channels; received shape {x.shape}. "
            "Channels-first data? Use np.moveaxis(x, 1, -1)."
        )
    if x.shape[0] == 0:
        raise ValueError("The image array is empty (0 images).")
    return to_pixel_range(x)


def _check_not_strings(x):
    strings = x.dtype == object and x.size and isinstance(x.flat[0], (str, bytes))
    if x.dtype.kind in "US" or strings:
        raise ValueError(
            "This is an image model: x must be images (a numeric array, a folder, or image "
            f"file paths); received an array of strings of shape {x.shape}. Labels go in y."
        )
    if x.dtype == object:
        raise ValueError(
            "Images given as an object array (different sizes?). Resize them to one size, "
            "or pass file paths."
        )


def to_pixel_range(x):
    """Puts image values in the 0-255 range the model expects, decided by dtype.

    - `uint8` and other integers, float 0-255: kept.
    - `uint16` (16-bit images, 0-65535): divided by 257 (65535 -> 255), float32.
    - `bool` (masks, 1-bit images): True -> 255, uint8.
    - floats whose values all lie in [0, 1] (and are not all 0): refused, since
      the model would read them as almost black; multiply by 255 first.

    Args:
        x: a numeric numpy array.

    Returns:
        The array in 0-255 values.

    Raises:
        ValueError: NaN/inf values, or 0-1 floats.
    """
    if x.dtype == bool:
        return x.astype("uint8") * np.uint8(255)
    if x.dtype == np.uint16:
        return x.astype("float32") / np.float32(257.0)
    if x.dtype.kind != "f":
        return x
    if not np.all(np.isfinite(x)):
        raise ValueError("The images contain NaN or inf values.")
    low, high = float(x.min()), float(x.max())
    if low >= 0.0 and high <= 1.0 and high > 0.0:
        raise ValueError(
            f"The images are {x.dtype} values all within [0, 1] (from {low:g} to {high:g}), "
            "but the model expects 0-255 pixel values (as uint8 images hold) and would see "
            "them as almost black. Pass x * 255 (or the original uint8 images); finetunekit "
            "applies the backbone's own normalisation inside the model."
        )
    return x


def dataframe_columns(df, x_col=None, y_col=None):
    """Finds the path and label columns of a DataFrame and reads its paths.

    Args:
        df: a DataFrame with one image path per row.
        x_col: the path column, or None to look for one named as in `PATH_COLUMNS`.
        y_col: the label column, or None to look for one named as in `LABEL_COLUMNS`.

    Returns:
        `(x_col, y_col, paths)`; `y_col` is None without a label column.

    Raises:
        ValueError: a named column that does not exist, no path column, or
            rows without a path (listed).
    """
    columns = list(df.columns)
    given_y = y_col
    x_col = find_column(df, x_col, PATH_COLUMNS, "path", "x_col=")
    y_col = find_column(df, y_col, LABEL_COLUMNS, "label", "y_col= (or y=)")
    if x_col is None and len(columns) == 2 and given_y in columns:
        x_col = next(c for c in columns if c != given_y)
    if x_col not in columns:
        raise ValueError(
            f"Cannot find the input column of the DataFrame (columns: {columns}). "
            f"Name it one of {PATH_COLUMNS} or pass x_col=..."
        )
    paths = [os.fspath(p) for p in column_values(df, x_col, "image path")]
    return x_col, y_col, paths


def decode_dataset(paths, labels, weights, image_size, channels, batch_size, shuffle, seed=None):
    """A `tf.data` pipeline over files: read, decode, resize, batch, prefetch.

    Decoding runs in parallel (`AUTOTUNE`). Images are resized to `image_size`
    so they batch; the model's own formatter then leaves them as they are.
    Labels and sample weights (either may be None) travel with their files.
    """
    import tensorflow as tf

    paths = list(map(os.fspath, paths))
    parts = [tf.data.Dataset.from_tensor_slices(paths)]
    parts += [tf.data.Dataset.from_tensor_slices(v) for v in (labels, weights) if v is not None]
    ds = parts[0] if len(parts) == 1 else tf.data.Dataset.zip(tuple(parts))
    if shuffle:
        ds = ds.shuffle(min(len(paths), 10_000), seed=seed, reshuffle_each_iteration=True)

    def load(path, *rest):
        image = decode_image(tf.io.read_file(path), channels)
        image = tf.image.resize(image, image_size)
        image.set_shape(tuple(image_size) + (channels,))
        return (image, *rest) if rest else image

    return ds.map(load, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size).prefetch(
        tf.data.AUTOTUNE
    )


def list_images(folder):
    """Image files directly in `folder`, sorted by name."""
    folder = os.fspath(folder)
    names = sorted(
        n for n in os.listdir(folder)
        if n.lower().endswith(IMAGE_EXTENSIONS) and not n.startswith(".")
        and os.path.isfile(os.path.join(folder, n))
    )
    if not names:
        subfolders = [n for n in os.listdir(folder) if os.path.isdir(os.path.join(folder, n))]
        hint = f" (it holds sub-folders {subfolders[:4]}; images must be directly in it)" if subfolders else ""
        raise ValueError(
            f"No images in {folder!r}{hint}. Looked for {', '.join(IMAGE_EXTENSIONS)} files."
        )
    return [os.path.join(folder, n) for n in names]
