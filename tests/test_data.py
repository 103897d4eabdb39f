import os

import numpy as np
import pytest

from finetunekit.core.data.images import BadImageError, list_image_folder
from tests.conftest import tiny_tuner, write_images


@pytest.fixture
def folder(tmp_path):
    return write_images(str(tmp_path / "photos"), {"cat": 6, "dog": 6, "other": 4})


def test_folder_lists_classes_and_files(folder):
    paths, labels, names = list_image_folder(folder)
    assert names == ["cat", "dog", "other"]
    assert len(paths) == 16 and labels.count("other") == 4


def test_fit_on_folder_with_validation_split(folder):
    ft = tiny_tuner(num_classes=3)
    history = ft.fit(folder, validation_split=0.25, epochs=1, batch_size=4, seed=1, verbose=0)
    assert ft.class_names == ["cat", "dog", "other"]
    assert "val_loss" in history.history
    probs = ft.predict(folder, verbose=0)
    assert probs.shape == (16, 3)
    labels = ft.predict_labels([os.path.join(folder, "cat", "0.jpg")])
    assert labels[0] in ft.class_names
    assert len(ft.evaluate(folder, verbose=0)) == 2


def test_fit_on_paths_and_dataframe(folder):
    pd = pytest.importorskip("pandas")
    paths, labels, _ = list_image_folder(folder)
    ft = tiny_tuner(num_classes=3)
    ft.fit(paths, labels, epochs=1, verbose=0)
    assert ft.class_names == ["cat", "dog", "other"]
    df = pd.DataFrame({"filename": paths, "label": labels})
    ft.fit(df, epochs=1, verbose=0)
    df2 = pd.DataFrame({"img": paths, "kind": labels})
    ft.fit(df2, x_col="img", y_col="kind", validation_data=(paths[:4], labels[:4]), epochs=1, verbose=0)
    with pytest.raises(ValueError, match="Cannot find the input column"):
        ft.fit(pd.DataFrame({"a": paths, "b": labels, "c": labels}), epochs=1, verbose=0)


def test_validation_split_is_stratified_and_seeded():
    from finetunekit.core.data.pipeline import split_indices

    labels = np.array([0] * 10 + [1] * 10)
    train, val = split_indices(20, 0.2, labels, seed=0)
    assert sorted(np.bincount(labels[val])) == [2, 2]
    again = split_indices(20, 0.2, labels, seed=0)
    np.testing.assert_array_equal(val, again[1])
    assert len(set(train) & set(val)) == 0


def test_array_validation_split():
    x = np.random.default_rng(0).integers(0, 255, (20, 16, 16, 3)).astype("uint8")
    y = np.array([0, 1, 2, 0] * 5)
    history = tiny_tuner(num_classes=3).fit(x, y, validation_split=0.25, epochs=1, verbose=0)
    assert "val_accuracy" in history.history


def _corrupt(folder):
    bad_jpeg = os.path.join(folder, "cat", "broken.jpg")
    with open(bad_jpeg, "wb") as f:
        f.write(b"\xff\xd8\xff\xe0 not really a jpeg")
    truncated = os.path.join(folder, "dog", "truncated.png")
    with open(os.path.join(folder, "dog", "1.png"), "rb") as f:
        data = f.read()
    with open(truncated, "wb") as f:
        f.write(data[: len(data) // 2])
    empty = os.path.join(folder, "other", "empty.png")
    open(empty, "wb").close()
    return bad_jpeg, truncated, empty


def test_corrupt_images_are_reported_by_path(folder):
    bad = _corrupt(folder)
    with pytest.raises(BadImageError) as info:
        tiny_tuner(num_classes=3).fit(folder, epochs=1, verbose=0)
    message = str(info.value)
    for path in bad:
        assert path in message
    assert "0 bytes" in message and 'on_bad_image="skip"' in message
    assert sorted(p for p, _ in info.value.paths) == sorted(bad)


def test_corrupt_images_skipped_with_warning(folder):
    _corrupt(folder)
    ft = tiny_tuner(num_classes=3)
    with pytest.warns(UserWarning, match="Skipping 3 unreadable image") as caught:
        ft.fit(folder, epochs=1, verbose=0, on_bad_image="skip")
    skipped = [w for w in caught if "Skipping" in str(w.message)]
    assert skipped and skipped[0].filename == __file__  # the user's fit call, not a library line
    with pytest.raises(ValueError, match="on_bad_image"):
        ft.fit(folder, epochs=1, verbose=0, on_bad_image="ignore")


def test_sixteen_bit_and_rgba_png_are_read(tmp_path):
    from PIL import Image

    root = tmp_path / "data"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        Image.fromarray((np.arange(400).reshape(20, 20) * 100).astype(np.uint16)).save(root / cls / "deep.png")
        Image.fromarray(np.full((20, 20, 4), 200, np.uint8), "RGBA").save(root / cls / "alpha.png")
        Image.fromarray(np.full((20, 20), 50, np.uint8), "L").save(root / cls / "gray.png")
    ft = tiny_tuner(num_classes=2)
    ft.fit(str(root), epochs=1, verbose=0)
    assert ft.predict(str(root), verbose=0).shape == (6, 2)


@pytest.mark.parametrize(
    "make,error,match",
    [
        (lambda tmp: str(tmp / "missing"), FileNotFoundError, "No such image file or folder"),
        (lambda tmp: (tmp / "flat").mkdir() or str(tmp / "flat"), ValueError, "No class sub-folders"),
    ],
)
def test_folder_errors(tmp_path, make, error, match):
    with pytest.raises(error, match=match):
        tiny_tuner(num_classes=3).fit(make(tmp_path), epochs=1, verbose=0)


def test_class_folder_without_images(folder):
    os.makedirs(os.path.join(folder, "bird"))
    with pytest.raises(ValueError, match="Class folder\\(s\\) 'bird' .* hold no images"):
        tiny_tuner(num_classes=4).fit(folder, epochs=1, verbose=0)


def test_folder_class_count_must_match_head(folder):
    with pytest.raises(ValueError, match="data has 3 classes .* num_classes=2"):
        tiny_tuner(num_classes=2).fit(folder, epochs=1, verbose=0)


@pytest.mark.parametrize(
    "x,y,match",
    [
        (np.zeros((0, 16, 16, 3)), [], "empty"),
        (np.zeros((16, 16)), [0] * 16, "rank 2"),
        (np.zeros((2, 3, 16, 16, 3)), [0, 1], "rank 5"),
        (np.zeros((4, 16, 16, 3)), [0, 1, 2], "different lengths: 4 inputs but 3 labels"),
        (np.zeros((4, 3, 16, 16)), [0, 1, 2, 0], "Channels-first"),
        (np.full((2, 16, 16, 3), np.nan), [0, 1], "NaN"),
        ([], [], "empty"),
    ],
)
def test_array_input_errors(x, y, match):
    with pytest.raises(ValueError, match=match):
        tiny_tuner(num_classes=3).fit(x, y, epochs=1, verbose=0)


def test_fit_argument_errors():
    x = np.zeros((4, 16, 16, 3))
    ft = tiny_tuner(num_classes=3)
    with pytest.raises(ValueError, match="`epochs` must be a positive integer"):
        ft.fit(x, [0, 1, 2, 0], epochs=-1)
    with pytest.raises(ValueError, match="No labels"):
        ft.fit(x, epochs=1)
    # a batch larger than the data is fine
    ft.fit(x, [0, 1, 2, 0], epochs=1, batch_size=64, verbose=0)
