"""The bad-input catalogue, segmentation part: masks, mask folders and `SegmentationHead` arguments.

One row per case: `(id, run, error, fragment)`, as in `tests/test_bad_inputs.py`.
The same rows are in docs/errors.md ("Segmentation").
"""

import os

import numpy as np
import pytest

import finetunekit as fk
from tests.catalogue import run_case, undocumented
from tests.conftest import tiny_cnn

X4 = np.zeros((4, 20, 24, 3), "uint8")
MASKS = np.zeros((4, 20, 24), "int32")


def tuner(**kwargs):
    return fk.FineTuner(tiny_cnn((16, 16, 3)), head=fk.SegmentationHead(3, filters=4),
                        preprocessing="zero_one", **kwargs)


def fit(x=X4, y=MASKS, **kwargs):
    return tuner(**kwargs).fit(x, y, epochs=1, verbose=0)


def with_value(value, dtype="int32"):
    masks = MASKS.astype(dtype)
    masks[1, 3, 4] = value
    return masks


def void_and(value):
    """uint8 masks with a void pixel (255) in each, and `value` in mask 1."""
    masks = with_value(value, "uint8")
    masks[:, 0, 0] = 255
    return masks


def folders(tmp, images=("a", "b"), masks=("a", "b"), mode="L"):
    from PIL import Image

    os.makedirs(tmp / "images")
    os.makedirs(tmp / "masks")
    for stem in images:
        Image.fromarray(np.zeros((8, 8, 3), "uint8")).save(tmp / "images" / f"{stem}.jpg")
    for stem in masks:
        shape = (8, 8, 3) if mode == "RGB" else (8, 8)
        Image.fromarray(np.zeros(shape, "uint8"), mode=mode).save(tmp / "masks" / f"{stem}.png")
    return str(tmp / "images"), str(tmp / "masks")


def two_images_one_name(tmp):
    from PIL import Image

    images, masks = folders(tmp)
    Image.fromarray(np.zeros((8, 8, 3), "uint8")).save(os.path.join(images, "a.png"))
    return fit(images, masks)


def truncated_mask(tmp):
    images, masks = folders(tmp)
    path = os.path.join(masks, "b.png")
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    return fit(images, masks)


def fit_folders(tmp, **kwargs):
    return fit(*folders(tmp, **kwargs))


def hub_backbone_without_size(tmp):
    from tests.harness import tiny_hub_resnet

    return fk.FineTuner(backbone=tiny_hub_resnet(), head=fk.SegmentationHead(2))


def hub_preset_offline(tmp):
    import keras_hub
    import requests

    def no_network(*args, **kwargs):  # what kagglehub raises without a network
        raise requests.exceptions.ConnectionError(
            "HTTPSConnectionPool(host='api.kaggle.com', port=443): Max retries exceeded with url: "
            "/v1/models (Caused by NameResolutionError(\"Failed to resolve 'api.kaggle.com'\"))"
        )

    real = keras_hub.models.Backbone.from_preset
    keras_hub.models.Backbone.from_preset = no_network
    try:
        return fk.FineTuner("resnet_18_imagenet", head=fk.SegmentationHead(2), input_shape=(32, 32, 3))
    finally:
        keras_hub.models.Backbone.from_preset = real


def plot_wrong_size(tmp):
    return fk.plot_masks(X4[0], MASKS[0, :10], str(tmp / "m.png"))


# fmt: off
CASES = [
    ("mask_size_differs_from_image", lambda t: fit(y=MASKS[:, :, :20]), ValueError, r"Mask 0 has size \(20, 20\) but its image is \(20, 24\) \(height, width\).*nearest-neighbour"),
    ("mask_class_id_out_of_range", lambda t: fit(y=with_value(5)), ValueError, r"Mask 1 holds class ids from 0 to 5, but num_classes=3 accepts 0\.\.2\. Set num_classes=6"),
    ("mask_negative_class_id", lambda t: fit(y=with_value(-1)), ValueError, r"Mask 1 holds class ids from -1 to 0, but num_classes=3 accepts 0\.\.2"),
    ("mask_ignore_value_255", lambda t: fit(y=with_value(255, "uint8")), ValueError, r"class ids from 0 to 255.*or SegmentationHead\(ignore_index=255\) if pixels valued 255 are void \(unlabelled\): they then count in neither the loss nor the scores"),
    ("mask_out_of_range_besides_ignore_index", lambda t: fk.SegmentationHead(3, ignore_index=255).encode_targets(void_and(7)), ValueError, r"Mask 1 holds class ids from 0 to 7, but num_classes=3 accepts 0\.\.2 besides ignore_index=255 \(void\)\. Set num_classes=8"),
    ("segmentation_ignore_index_not_a_whole_number", lambda t: fk.SegmentationHead(3, ignore_index="void"), ValueError, r"`ignore_index` is the class id of void \(unlabelled\) pixels, a whole number such as 255, or None\. Received: ignore_index='void'"),
    ("mask_with_fractional_values", lambda t: fit(y=with_value(0.5, "float32")), ValueError, r"Mask 1 holds non-integer values \(float32\).*nearest-neighbour"),
    ("colour_mask_array", lambda t: fit(y=np.zeros((4, 20, 24, 3), "uint8")), ValueError, r"Mask 0 has shape \(20, 24, 3\); a mask is \(height, width\).*colour image"),
    ("mask_string_dtype", lambda t: fit(y=[np.full((20, 24), "a")] * 4), ValueError, r"Mask 0 has dtype <U1; masks hold integer class ids"),
    ("masks_not_arrays", lambda t: fit(y=3), ValueError, r"Segmentation targets must be masks: an \(n, height, width\) array"),
    ("mask_folder_missing_mask", lambda t: fit_folders(t, masks=("a",)), ValueError, r"do not pair up: 1 image\(s\) have no mask \['b'\].*same name without extension"),
    ("mask_folder_unpaired_mask", lambda t: fit_folders(t, masks=("a", "b", "c")), ValueError, r"do not pair up: 1 mask\(s\) have no image \['c'\]"),
    ("two_images_share_a_mask_name", two_images_one_name, ValueError, r"1 image name\(s\) are used by more than one image file, e\.g\. \['a\.jpg', 'a\.png'\]: masks pair with images by name without extension, so a\.png would be the mask of both"),
    ("truncated_mask_file", truncated_mask, ValueError, r"Cannot read the mask '.*b\.png' \(.*\)\. Re-save it as a single-channel PNG of class ids"),
    ("colour_mask_file", lambda t: fit_folders(t, mode="RGB"), ValueError, r"a\.png' is a RGB image; a mask file is single-channel \(PNG mode L or P\)"),
    ("mask_folder_with_image_array", lambda t: fit(X4, folders(t)[1]), ValueError, r"is a folder of masks; x must then be the folder of their images"),
    ("mask_folder_not_found", lambda t: fit(X4, str(t / "nothere")), FileNotFoundError, r"No such mask folder: .*nothere"),
    ("segmentation_class_names_count", lambda t: fit(class_names=["sky", "road"]), ValueError, r"2 class names \(\['sky', 'road'\]\) for a SegmentationHead with num_classes=3"),
    ("segmentation_one_class", lambda t: fk.SegmentationHead(1), ValueError, r"`num_classes` must be a whole number >= 2 \(background counts as a class\)\. Received: num_classes=1"),
    ("unknown_decoder", lambda t: fk.SegmentationHead(3, decoder="deeplab"), ValueError, r'Unknown decoder "deeplab"\. Expected one of "unet", "fpn"'),
    ("hub_backbone_without_input_shape", hub_backbone_without_size, ValueError, r"The keras-hub backbone 'res_net_backbone\w*' takes images of any size; pass input_shape=\(height, width, 3\)"),
    ("hub_preset_download_fails_offline", hub_preset_offline, ConnectionError, r"Could not download the keras-hub preset 'resnet_18_imagenet': no network .*save_to_preset\('folder'\), then pass backbone='folder'"),
    ("plot_masks_wrong_size", plot_wrong_size, ValueError, r"The mask has shape \(10, 24\) but the image is \(20, 24\)"),
]
# fmt: on


@pytest.mark.parametrize("case_id,run,error,fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input(tmp_path, case_id, run, error, fragment):
    run_case(run, error, fragment, tmp_path)


def test_rows_are_documented():
    assert undocumented([c[0] for c in CASES], "Segmentation") == []
