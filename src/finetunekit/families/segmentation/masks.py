"""Segmentation masks: checks of class-id masks and a reader of image and mask folders.

A mask gives one class id per pixel of its image: an `(h, w)` integer array,
or a single-channel PNG file (mode `L`, `P`, `I` or `1`) whose pixel values
are the class ids. A folder of images pairs with a folder of PNG masks by
file name without extension (`images/cat_01.jpg` with `masks/cat_01.png`).
"""

import os

import numpy as np

from finetunekit.core.data.images import is_path, list_images

#: PIL modes read as class ids (grey levels, palette indices, 32-bit ints, bits).
MASK_MODES = ("L", "P", "I", "I;16", "1")


def check_masks(y, num_classes, ignore_index=None):
    """Checks class-id masks and returns them as a list of `(h, w)` int32 arrays.

    Args:
        y: an `(n, h, w)` array, or a list of `(h, w)` arrays (sizes may differ).
            A trailing channel axis of size 1 is dropped.
        num_classes: int. Class ids must be in `0..num_classes - 1`.
        ignore_index: int or None. A mask value of void pixels, allowed besides the class ids.

    Returns:
        A list of int32 arrays.

    Raises:
        ValueError: a mask of the wrong rank, a non-integer dtype, or class
            ids out of range.
    """
    if isinstance(y, np.ndarray) and y.ndim in (3, 4) or hasattr(y, "numpy"):
        y = list(np.asarray(y))
    if not isinstance(y, (list, tuple)):
        _not_masks(y)
    return [_check_mask(mask, index, num_classes, ignore_index) for index, mask in enumerate(y)]


def _not_masks(y):
    raise ValueError(
        "Segmentation targets must be masks: an (n, height, width) array of class ids, a "
        f"list of (height, width) arrays, or a folder of PNG masks. Received: {type(y).__name__}"
    )


def _check_mask(mask, index, num_classes, ignore_index=None):
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[-1] == 1:
        mask = mask[..., 0]
    if mask.ndim != 2:
        hint = (
            " It looks like a colour image: convert colour-coded masks to one class id per pixel."
            if mask.ndim == 3 and mask.shape[-1] in (3, 4)
            else ""
        )
        raise ValueError(
            f"Mask {index} has shape {mask.shape}; a mask is (height, width) with one class id "
            f"per pixel (or (n, height, width) for all masks).{hint}"
        )
    if mask.dtype == bool:
        mask = mask.astype("int32")
    if mask.dtype.kind == "f":
        if not np.all(np.isfinite(mask)) or not np.all(np.mod(mask, 1) == 0):
            raise ValueError(
                f"Mask {index} holds non-integer values ({mask.dtype}); a mask gives one integer "
                "class id per pixel, not probabilities or a resized (interpolated) mask. Round "
                "it, or resize masks with nearest-neighbour interpolation."
            )
    elif mask.dtype.kind not in "iu":
        raise ValueError(
            f"Mask {index} has dtype {mask.dtype}; masks hold integer class ids (uint8, int32)."
        )
    labelled = mask if ignore_index is None else mask[mask != ignore_index]
    if labelled.size:
        low, high = int(labelled.min()), int(labelled.max())
        if low < 0 or high >= num_classes:
            odd = low if low < 0 else high
            besides = "" if ignore_index is None else f" besides ignore_index={ignore_index} (void)"
            raise ValueError(
                f"Mask {index} holds class ids from {low} to {high}, but num_classes="
                f"{num_classes} accepts 0..{num_classes - 1}{besides}. Set num_classes={high + 1} "
                f"if the ids are classes, or SegmentationHead(ignore_index={odd}) if pixels "
                f"valued {odd} are void (unlabelled): they then count in neither the loss nor "
                "the scores. Otherwise map the ids to classes."
            )
    return mask.astype("int32")


def read_mask(path):
    """Reads a single-channel mask file into an `(h, w)` int32 array of class ids.

    Args:
        path: str. A PNG (or any Pillow-readable) mask with mode L, P, I or 1.

    Returns:
        An int32 array.

    Raises:
        ValueError: a colour (RGB/RGBA) or grey+alpha mask.
    """
    from PIL import Image

    path = os.fspath(path)
    try:
        with Image.open(path) as image:
            mode = image.mode
            array = np.asarray(image) if mode in MASK_MODES else None
    except FileNotFoundError:
        raise FileNotFoundError(f"Mask file not found: {path!r}") from None
    except Exception as error:  # Pillow raises many types for damaged or huge files
        raise ValueError(
            f"Cannot read the mask {path!r} ({type(error).__name__}: {error}). Re-save it as a "
            "single-channel PNG of class ids."
        ) from None
    if array is None:
        raise ValueError(
            f"Mask {path!r} is a {mode} image; a mask file is single-channel "
            "(PNG mode L or P) with one class id per pixel. Convert colour-coded masks to "
            "class ids first, e.g. Image.fromarray(ids.astype('uint8')).save(path)."
        )
    return array.astype("int32")


def _check_unique_stems(images):
    """Raises when two images share a name without extension (`a.jpg`, `a.png`): one mask for both."""
    by_stem = {}
    for path in images:
        by_stem.setdefault(os.path.splitext(os.path.basename(path))[0], []).append(path)
    shared = {stem: paths for stem, paths in by_stem.items() if len(paths) > 1}
    if shared:
        stem, paths = next(iter(shared.items()))
        raise ValueError(
            f"{len(shared)} image name(s) are used by more than one image file, e.g. "
            f"{[os.path.basename(p) for p in paths]}: masks pair with images by name without "
            f"extension, so {stem}.png would be the mask of both. Rename or remove the extra "
            "files."
        )


def pair_mask_folder(image_folder, mask_folder):
    """Pairs each image with its mask by file stem.

    Args:
        image_folder: str. A folder of images.
        mask_folder: str. A folder of PNG masks named like the images.

    Returns:
        `(image_paths, mask_paths)`, paired and sorted by name.

    Raises:
        ValueError: images without a mask, or masks without an image.
    """
    images = list_images(image_folder)
    _check_unique_stems(images)
    masks = {
        os.path.splitext(n)[0]: os.path.join(os.fspath(mask_folder), n)
        for n in sorted(os.listdir(mask_folder))
        if n.lower().endswith(".png") and not n.startswith(".")
    }
    stems = [os.path.splitext(os.path.basename(p))[0] for p in images]
    missing = [s for s in stems if s not in masks]
    unpaired = sorted(set(masks) - set(stems))
    if missing or unpaired:
        parts = []
        if missing:
            parts.append(f"{len(missing)} image(s) have no mask {missing[:5]}")
        if unpaired:
            parts.append(f"{len(unpaired)} mask(s) have no image {unpaired[:5]}")
        raise ValueError(
            f"Images in {os.fspath(image_folder)!r} and masks in {os.fspath(mask_folder)!r} do "
            f"not pair up: {'; '.join(parts)}. Each image needs a PNG mask with the same name "
            "without extension (cat_01.jpg -> cat_01.png)."
        )
    return images, [masks[s] for s in stems]


def read_mask_data(x, y):
    """Reads image/mask folders and mask files into `(images, masks)`; other data pass through.

    Args:
        x: images: a folder of images (no class sub-folders), paths or an array.
        y: masks: a folder of PNG masks, a list of mask paths, arrays, or None.

    Returns:
        `(x, y)` with folders listed and mask files read.
    """
    if y is not None and not (is_path(y) or isinstance(y, (list, tuple, np.ndarray))
                              or hasattr(y, "numpy")):
        _not_masks(y)
    if is_path(y) and os.path.isdir(y):
        if not (is_path(x) and os.path.isdir(x)):
            raise ValueError(
                f"y={os.fspath(y)!r} is a folder of masks; x must then be the folder of their "
                "images (paired by file name)."
            )
        x, mask_paths = pair_mask_folder(x, y)
        return x, [read_mask(p) for p in mask_paths]
    if is_path(y):
        raise FileNotFoundError(f"No such mask folder: {os.fspath(y)!r}")
    if is_path(x) and os.path.isdir(x):
        x = list_images(x)
    if isinstance(y, (list, tuple)) and y and all(is_path(p) for p in y):
        y = [read_mask(p) for p in y]
    return x, y
