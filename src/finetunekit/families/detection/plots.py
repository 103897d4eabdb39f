"""`fk.plot_boxes`: an image with its detected (or true) boxes, labels and scores, as a PNG."""

import os

import numpy as np

from finetunekit.core.plotting import figure, save_figure
from finetunekit.families.detection.targets import to_xyxy

COLOURS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324")


def _as_image(image):
    if isinstance(image, (str, os.PathLike)):
        from PIL import Image

        with Image.open(os.fspath(image)) as opened:
            return np.asarray(opened.convert("RGB"))
    image = np.asarray(image)
    if image.ndim == 2 or (image.ndim == 3 and image.shape[-1] == 1):
        image = np.repeat(image.reshape(image.shape[:2] + (1,)), 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] not in (3, 4):
        raise ValueError(
            f"plot_boxes takes one image of shape (height, width[, channels]) or a file path. "
            f"Received an array of shape {image.shape}."
        )
    if image.dtype.kind == "f" and image.max() > 1.0:
        image = np.clip(image, 0, 255).astype("uint8")
    return image[..., :3]


def plot_boxes(image, prediction, path, bounding_box_format="xyxy", min_score=0.0, dpi=100):
    """Draws an image with boxes, class labels and scores to a PNG (written atomically).

    Args:
        image: an `(h, w, 3)` array (uint8 or 0-255 floats) or an image file.
        prediction: one image's entry of `ft.predict_boxes(...)` (`"boxes"`,
            `"labels"`, `"scores"`), or true boxes `{"boxes", "labels"}`.
        path: str. The PNG file to write.
        bounding_box_format: str. Format of the boxes (the head's). Defaults
            to `"xyxy"`.
        min_score: float. Boxes scoring less are not drawn. Defaults to 0.
        dpi: int. Resolution. Defaults to 100.

    Returns:
        The path written.

    Example:
    ```python
    found = det.predict_boxes(["street.jpg"])
    fk.plot_boxes("street.jpg", found[0], "street_boxes.png")
    ```
    """
    pixels = _as_image(image)
    if not isinstance(prediction, dict) or "boxes" not in prediction:
        raise ValueError(
            "plot_boxes takes one image's prediction: a dict with 'boxes' (and 'labels', "
            f"'scores'), such as ft.predict_boxes(images)[0]. Received: {type(prediction).__name__}"
        )
    boxes = to_xyxy(prediction["boxes"], bounding_box_format)
    labels = list(np.asarray(prediction.get("labels", [""] * len(boxes))).reshape(-1))
    scores = prediction.get("scores")
    scores = None if scores is None else np.asarray(scores, "float32").reshape(-1)
    height, width = pixels.shape[:2]
    fig = figure(figsize=(max(3.0, width / dpi * 2), max(3.0, height / dpi * 2)), dpi=dpi)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.imshow(pixels)
    ax.axis("off")
    names = sorted({str(label) for label in labels})
    for index, (x1, y1, x2, y2) in enumerate(boxes):
        if scores is not None and scores[index] < min_score:
            continue
        label = str(labels[index]) if index < len(labels) else ""
        colour = COLOURS[names.index(label) % len(COLOURS)] if label in names else COLOURS[0]
        ax.add_patch(_rectangle((x1, y1), x2 - x1, y2 - y1, colour))
        text = label if scores is None else f"{label} {scores[index]:.2f}"
        ax.text(x1, y1, text, color="white", fontsize=8, va="bottom",
                bbox={"facecolor": colour, "alpha": 0.8, "pad": 1, "edgecolor": "none"})
    return save_figure(fig, path)


def _rectangle(corner, width, height, colour):
    from matplotlib.patches import Rectangle

    return Rectangle(corner, width, height, fill=False, edgecolor=colour, linewidth=2)
