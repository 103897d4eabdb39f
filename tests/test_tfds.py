"""TFDS data: `"tfds:name[:split]"` and `fk.data.TFDS`, with datasets the tests build offline.

Each dataset here is a TFDS `GeneratorBasedBuilder` whose examples are generated
in the test, prepared into a temporary `data_dir`: the same loading path as a
downloaded dataset, without the network.
"""

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

import finetunekit as fk  # noqa: E402
from finetunekit.core.data.tfds import as_tfds  # noqa: E402
from tests.conftest import tiny_cnn  # noqa: E402
from tests.test_text import text_tuner  # noqa: E402

WORDS = {0: ["dull", "boring", "awful", "bad"], 1: ["great", "fun", "good", "fine"]}


class FkTinyReviews(tfds.core.GeneratorBasedBuilder):
    """Two-class reviews built from the tiny BERT vocabulary of tests/test_text.py."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "text": tfds.features.Text(),
                    "label": tfds.features.ClassLabel(names=["negative", "positive"]),
                }
            ),
            supervised_keys=("text", "label"),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(0, 48), "test": self._generate_examples(1, 16)}

    def _generate_examples(self, seed, n):
        rng = np.random.default_rng(seed)
        for i in range(n):
            label = i % 2
            words = rng.choice(WORDS[label], size=rng.integers(1, 5)).tolist()
            yield i, {"text": " ".join(["the", "movie", "is", *words]), "label": label}


class FkTinyPets(tfds.core.GeneratorBasedBuilder):
    """Dark "cat" and bright "dog" images of different sizes."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3)),
                    "label": tfds.features.ClassLabel(names=["cat", "dog"]),
                }
            ),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(0, 24), "test": self._generate_examples(1, 8)}

    def _generate_examples(self, seed, n):
        rng = np.random.default_rng(seed)
        for i in range(n):
            label = i % 2
            size = int(rng.integers(12, 30))
            base = 30 if label == 0 else 200
            image = rng.integers(base, base + 40, (size, size + 3, 3)).astype("uint8")
            yield i, {"image": image, "label": label}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tfds")
    for name in ("fk_tiny_reviews", "fk_tiny_pets"):
        tfds.builder(name, data_dir=str(path)).download_and_prepare()
    return str(path)


def test_text_classifier_trains_and_reports_on_tfds_splits(data_dir):
    ft = text_tuner(unfreeze="all")
    ft.compile(learning_rate=5e-3)
    train = fk.data.TFDS("fk_tiny_reviews", split="train", data_dir=data_dir)
    test = fk.data.TFDS("fk_tiny_reviews", split="test", data_dir=data_dir)
    history = ft.fit(train, validation_data=test, epochs=8, batch_size=8, verbose=0)
    assert ft.class_names == ["negative", "positive"]
    assert "val_loss" in history.history
    assert history.history["loss"][-1] < history.history["loss"][0]
    report = ft.evaluate(test, report=True)
    assert report.num_examples == 16
    assert report.metrics["accuracy"] >= 0.75
    labels = ft.predict_labels(["the movie is great fun", "the movie is dull"])
    assert labels == ["positive", "negative"]


def test_image_classifier_trains_on_tfds_images_of_any_size(data_dir):
    ft = fk.FineTuner(
        tiny_cnn(), head=fk.ClassificationHead(2), preprocessing="zero_one", unfreeze="all"
    )
    ft.compile(learning_rate=1e-2)
    ft.fit(
        fk.data.TFDS("fk_tiny_pets", data_dir=data_dir),
        epochs=6,
        batch_size=8,
        verbose=0,
        cache_features=False,
    )
    assert ft.class_names == ["cat", "dog"]
    result = ft.evaluate(fk.data.TFDS("fk_tiny_pets", split="test", data_dir=data_dir), verbose=0)
    assert result[1] == 1.0  # dark vs bright is easy
    probabilities = ft.predict(fk.data.TFDS("fk_tiny_pets", split="test", data_dir=data_dir))
    assert probabilities.shape == (8, 2)


def test_tfds_string_shortcut_and_split_slicing(data_dir):
    source = as_tfds("tfds:fk_tiny_reviews:train[:25%]")
    assert (source.name, source.split) == ("fk_tiny_reviews", "train[:25%]")
    assert as_tfds("tfds:fk_tiny_reviews").split == "train"
    source.data_dir = data_dir
    ds, names = source.load()
    assert names == ["negative", "positive"]
    assert len(list(ds)) == 12


def test_tfds_errors_name_the_problem_and_the_fix(tmp_path, data_dir):
    ft = text_tuner()
    with pytest.raises(ValueError, match="Unknown TFDS dataset 'no_such_set_fk'"):
        ft.fit("tfds:no_such_set_fk", epochs=1)
    offline = fk.data.TFDS("fk_tiny_reviews", data_dir=str(tmp_path), download=False)
    with pytest.raises(ValueError, match="is not prepared in .* and download=False"):
        ft.fit(offline, epochs=1)
    train = fk.data.TFDS("fk_tiny_reviews", data_dir=data_dir)
    with pytest.raises(ValueError, match="Labels come from the TFDS dataset"):
        ft.fit(train, ["positive"], epochs=1)
    with pytest.raises(ValueError, match="validation_split is not supported for TFDS data"):
        ft.fit(train, validation_split=0.2, epochs=1)
    with pytest.raises(ValueError, match="has no feature 'review'"):
        ft.fit(fk.data.TFDS("fk_tiny_reviews", data_dir=data_dir, x_key="review"), epochs=1)
