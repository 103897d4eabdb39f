"""Pictures of segmentation masks over their images (`fk.plot_masks`)."""

import os

import numpy as np

from finetunekit.core.plotting import figure, save_figure


def plot_masks(image, mask, path, prediction=None, class_names=None, alpha=0.5, dpi=100,
               ignore_index=None):
    """Draws an image with its class-id mask (and a predicted mask) overlaid, to a PNG.

    Class 0 (background) and void pixels (`ignore_index`) are left clear;
    every other class gets its own colour, named in a legend. The file is
    written atomically.

    Args:
        image: `(h, w)` or `(h, w, channels)` array, uint8 or 0-255 floats
            (0-1 floats are scaled).
        mask: `(h, w)` class ids (the truth, or a prediction to show alone).
        path: str. The PNG file to write.
        prediction: `(h, w)` class ids or None. Drawn in a third panel.
        class_names: list of str or None. Legend names by class id.
        alpha: float in [0, 1]. Opacity of the mask colours. Defaults to `0.5`.
        dpi: int. Resolution. Defaults to `100`.
        ignore_index: int or None. Mask value of void pixels (the head's
            `ignore_index`): not coloured, not in the legend. Defaults to None.

    Returns:
        The path written.

    Raises:
        ValueError: a mask whose size differs from the image's.
        ImportError: matplotlib is not installed.

    Example:
    ```python
    masks = ft.predict_masks(images)
    fk.plot_masks(images[0], truth[0], "mask.png", prediction=masks[0],
                  class_names=["background", "shirt", "shoe"])
    ```
    """
    picture = _as_picture(image)
    panels = [("image", None), ("mask", _as_mask(mask, picture, "mask", ignore_index))]
    if prediction is not None:
        panels.append(("prediction", _as_mask(prediction, picture, "prediction", ignore_index)))
    classes = int(max(int(m.max()) for _, m in panels[1:]) + 1)
    colours = _colours(max(classes, len(class_names or ())))
    fig = figure(figsize=(3.2 * len(panels), 3.4))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, shown) in zip(axes, panels, strict=True):
        ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None)
        if shown is not None:
            overlay = colours[shown].copy()
            overlay[..., 3] = np.where(shown > 0, alpha, 0.0)
            ax.imshow(overlay, interpolation="nearest")
        ax.set_title(title)
        ax.axis("off")
    present = sorted({int(c) for _, m in panels[1:] for c in np.unique(m)} - {0})
    if present:
        from matplotlib.patches import Patch

        names = class_names or [str(i) for i in range(classes)]
        handles = [Patch(color=colours[c][:3], label=str(names[c]) if c < len(names) else str(c))
                   for c in present]
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), frameon=False)
    fig.tight_layout(rect=(0, 0.08 if present else 0, 1, 1))
    return save_figure(fig, os.fspath(path), dpi=dpi)


def _as_picture(image):
    picture = np.asarray(image)
    if picture.ndim == 3 and picture.shape[-1] == 1:
        picture = picture[..., 0]
    if picture.ndim == 3 and picture.shape[-1] == 4:
        picture = picture[..., :3]
    if picture.ndim not in (2, 3) or (picture.ndim == 3 and picture.shape[-1] != 3):
        raise ValueError(
            f"plot_masks draws one image of shape (height, width) or (height, width, 3); "
            f"received shape {picture.shape}."
        )
    picture = picture.astype("float32")
    if picture.size and picture.max() > 1.0:
        picture = picture / 255.0
    return np.clip(picture, 0.0, 1.0)


def _as_mask(mask, picture, name, ignore_index=None):
    """`(h, w)` int64 class ids; void pixels become 0 (drawn clear, like the background)."""
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[-1] == 1:
        mask = mask[..., 0]
    if ignore_index is not None:
        mask = np.where(mask == ignore_index, 0, mask)
    if mask.shape != picture.shape[:2]:
        raise ValueError(
            f"The {name} has shape {mask.shape} but the image is {picture.shape[:2]} "
            "(height, width); draw a mask on the image it belongs to (predict_masks returns "
            "masks at each input's own size)."
        )
    if mask.size and mask.min() < 0:
        raise ValueError(f"The {name} holds negative class ids ({int(mask.min())}).")
    return mask.astype("int64")


def _colours(count):
    from matplotlib import colormaps

    table = colormaps["tab10"](np.arange(max(count, 1)) % 10)
    return np.asarray(table, "float32")
