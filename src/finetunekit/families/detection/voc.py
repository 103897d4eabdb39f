"""Pascal VOC xml annotations in the layouts real datasets ship, read inside the dataset folder only.

Accepted layouts (`VOC_LAYOUTS`): `Annotations/` + `JPEGImages/` (Pascal VOC
itself), `annotations/` or `annots/` + `images/` (any case), `.xml` files
beside their images, and two folders given apart (`fit(images_dir,
xml_dir)`). Each xml's image is found from its `<path>`, then its
`<filename>` (in the images folder, then beside the xml), then the xml's own
name with an image extension; a `<path>` or `<filename>` that leads out of
the dataset folder(s) is never opened.
"""

import os
import xml.etree.ElementTree as ElementTree

import numpy as np

from finetunekit.core.data.constants import IMAGE_EXTENSIONS

XML_FOLDERS = ("annotations", "annots")
IMAGE_FOLDERS = ("jpegimages", "images", "imgs")
VOC_LAYOUTS = (
    "Annotations/ + JPEGImages/ (Pascal VOC)",
    "annotations/ or annots/ + images/",
    ".xml files beside their images",
    "fit(images_dir, xml_dir)",
)


def _child(folder, names):
    """The sub-folder of `folder` whose lower-case name comes first in `names`, or None."""
    entries = {e.lower(): e for e in os.listdir(folder) if os.path.isdir(os.path.join(folder, e))}
    for name in names:
        if name in entries:
            return os.path.join(folder, entries[name])
    return None


def _xml_files(folder):
    return sorted(f for f in os.listdir(folder) if f.lower().endswith(".xml") and not f.startswith("."))


def voc_layout(folder):
    """`(xml_dir, image_dirs)` of a VOC-format dataset folder, or None when it has no xml files.

    Args:
        folder: str. The dataset folder.

    Returns:
        The folder holding the `.xml` files and the folders, in order, where
        their images are looked for; None for another kind of folder.

    Example:
    ```python
    voc_layout("fudan/")  # ("fudan/annotations", ["fudan/images", "fudan/annotations", "fudan"])
    ```
    """
    if not os.path.isdir(folder):
        return None
    xml_dir = _child(folder, XML_FOLDERS)
    if xml_dir is not None and _xml_files(xml_dir):
        images = _child(folder, IMAGE_FOLDERS)
        return xml_dir, [d for d in (images, xml_dir, folder) if d is not None]
    if _xml_files(folder):
        return folder, [folder]
    return None


def layout_error(where):
    """The ValueError for a folder in none of the accepted layouts."""
    return ValueError(
        f"{where} has no Pascal VOC .xml annotations in a layout finetunekit reads. Accepted "
        f"layouts: {'; '.join(VOC_LAYOUTS)}. (Other detection formats: a COCO json, or a YOLO "
        "folder of images/ + labels/.)"
    )


def read_voc(folder, xml_dir=None):
    """Reads Pascal VOC xml annotations and finds their images (see the module docstring).

    Args:
        folder: str. The dataset folder, or the images folder when `xml_dir` is given.
        xml_dir: str or None. The folder of `.xml` files, for `fit(images_dir, xml_dir)`.

    Returns:
        `(paths, targets)`; labels are the object names. VOC's 1-based
        corners become 0-based pixel edges.

    Example:
    ```python
    paths, targets = read_voc("fudan/")              # annotations/ + images/
    paths, targets = read_voc("photos/", "labels/")  # two folders
    ```
    """
    folder = os.fspath(folder)
    if xml_dir is None:
        layout = voc_layout(folder)
        if layout is None:
            raise layout_error(repr(folder))
        xml_dir, image_dirs, roots = layout[0], layout[1], [folder]
    else:
        xml_dir = os.fspath(xml_dir)
        if not os.path.isdir(xml_dir) or not _xml_files(xml_dir):
            raise layout_error(f"The annotations folder {xml_dir!r}")
        image_dirs, roots = [folder, xml_dir], [folder, xml_dir]
    paths, targets = [], []
    for name in _xml_files(xml_dir):
        file = os.path.join(xml_dir, name)
        root, boxes, labels = _parse(file)
        paths.append(_image_of(file, root, image_dirs, roots))
        boxes = np.maximum(np.asarray(boxes, "float32").reshape(-1, 4), 0.0)
        targets.append({"boxes": boxes, "labels": labels})
    return paths, targets


def _parse(file):
    try:
        root = ElementTree.parse(file).getroot()
        boxes, labels = [], []
        for item in root.iter("object"):
            box = item.find("bndbox")
            x1, y1, x2, y2 = (float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
            boxes.append([x1 - 1.0, y1 - 1.0, x2, y2])
            labels.append(item.findtext("name").strip())
    except (ElementTree.ParseError, AttributeError, TypeError, ValueError) as error:
        raise ValueError(
            f"{file} is not a readable Pascal VOC annotation ({error}): it needs, per <object>, "
            "<name> and <bndbox> with numeric xmin/ymin/xmax/ymax."
        ) from error
    return root, boxes, labels


def _inside(path, roots):
    path = os.path.normpath(os.path.abspath(path))
    for root in roots:
        root = os.path.normpath(os.path.abspath(root))
        if os.path.commonpath([path, root]) == root:
            return True
    return False


def _image_of(file, note, image_dirs, roots):
    """The image an annotation describes, found inside the dataset folder(s) only."""
    filename = (note.findtext("filename") or "").strip()
    written = (note.findtext("path") or "").strip()
    here = os.path.dirname(file)
    stem = os.path.splitext(os.path.basename(file))[0]
    candidates = [written if os.path.isabs(written) else os.path.join(here, written)] if written else []
    if filename:
        candidates += [os.path.join(d, filename) for d in image_dirs]
    candidates += [os.path.join(d, stem + ext) for d in image_dirs for ext in IMAGE_EXTENSIONS]
    candidates += [os.path.join(d, stem + ext.upper()) for d in image_dirs for ext in IMAGE_EXTENSIONS]
    for candidate in candidates:
        if _inside(candidate, roots) and os.path.isfile(candidate):
            return os.path.normpath(candidate)
    raise FileNotFoundError(
        f"{file}: its image (<filename> {filename or 'missing'}, <path> {written or 'missing'}, "
        f"or {stem} with an image extension) is in none of {image_dirs}. Images are looked for "
        "inside the dataset folder only: a <path> or <filename> leading out of it is not read. "
        "Put the image in the images folder or beside its xml file."
    )
