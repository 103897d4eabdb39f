"""TensorFlow Datasets (TFDS) as a data source: `"tfds:name[:split]"` or `TFDS(...)`."""

import os

PREFIX = "tfds:"


class TFDS:
    """A TensorFlow Datasets split to train, validate or evaluate on.

    `fit`, `fine_tune`, `evaluate`, `predict` and `validation_data` take it in
    place of `x` (no `y`: the labels come from the dataset). The string
    `"tfds:name[:split]"` is a shortcut for `TFDS(name, split)`. Class names
    come from the dataset's `ClassLabel` feature.

    Args:
        name: str. The TFDS name, with an optional config/version
            (`"imdb_reviews"`, `"cats_vs_dogs"`, `"glue/sst2"`).
        split: str. A TFDS split, slicing included (`"train[:80%]"`).
            Defaults to `"train"`.
        data_dir: str or None. Where TFDS keeps prepared data. Defaults to
            TFDS' own default (`$TFDS_DATA_DIR` or `~/tensorflow_datasets`).
        download: bool. Download and prepare the data if it is not in
            `data_dir` yet. With False, data that is not prepared is an error
            (offline use). Defaults to True.
        x_key, y_key: str or None. Feature names of the input and the label.
            Default to the dataset's supervised keys.

    Example:
    ```python
    ft.fit(fk.data.TFDS("imdb_reviews", split="train[:90%]"),
           validation_data="tfds:imdb_reviews:train[90%:]", epochs=2)
    ft.evaluate("tfds:imdb_reviews:test", report=True)
    ```
    """

    def __init__(self, name, split="train", data_dir=None, download=True, x_key=None, y_key=None):
        self.name = name
        self.split = split
        self.data_dir = None if data_dir is None else os.fspath(data_dir)
        self.download = download
        self.x_key = x_key
        self.y_key = y_key

    def __repr__(self):
        return f"TFDS({self.name!r}, split={self.split!r})"

    def load(self):
        """Returns `(dataset, class_names)`: unbatched `(x, label)` pairs and the label names.

        Raises:
            ImportError: tensorflow-datasets is not installed.
            ValueError: the name is unknown, the data is not prepared and
                `download=False`, or the dataset has no supervised keys and no
                `x_key` / `y_key`.
        """
        try:
            import tensorflow_datasets as tfds
        except ImportError as error:  # pragma: no cover - a runtime dependency
            raise ImportError(
                "TFDS data needs tensorflow-datasets: pip install tensorflow-datasets"
            ) from error
        try:
            builder = tfds.builder(self.name, data_dir=self.data_dir)
        except tfds.core.registered.DatasetNotFoundError as error:
            raise ValueError(
                f"Unknown TFDS dataset {self.name!r}. See "
                "https://www.tensorflow.org/datasets/catalog for the names."
            ) from error
        if not builder.is_prepared():
            if not self.download:
                raise ValueError(
                    f"TFDS dataset {self.name!r} is not prepared in {builder.data_dir!r} and "
                    "download=False. Prepare it on a machine with internet access "
                    "(tfds.builder(name).download_and_prepare()) and copy the folder, or pass "
                    "data_dir=... where it is."
                )
            builder.download_and_prepare()
        x_key, y_key = self._keys(builder.info)
        features = builder.info.features
        class_names = None
        if y_key in features and hasattr(features[y_key], "names"):
            class_names = list(features[y_key].names)
        import tensorflow as tf

        ds = builder.as_dataset(split=self.split, shuffle_files=False)
        size = builder.info.splits[self.split].num_examples
        if size == 0:
            raise ValueError(f"TFDS split {self.split!r} of {self.name!r} is empty.")
        ds = ds.map(lambda e: (e[x_key], e[y_key]), num_parallel_calls=tf.data.AUTOTUNE)
        # Known size: Keras shows progress and schedules know the steps per epoch.
        return ds.apply(tf.data.experimental.assert_cardinality(size)), class_names

    def _keys(self, info):
        supervised = info.supervised_keys or (None, None)
        x_key = self.x_key or supervised[0]
        y_key = self.y_key or supervised[1]
        if not isinstance(x_key, str) or not isinstance(y_key, str):
            raise ValueError(
                f"TFDS dataset {self.name!r} has no single (input, label) supervised keys; pass "
                f"x_key=... and y_key=... (features: {', '.join(info.features.keys())})."
            )
        for key in (x_key, y_key):
            if key not in info.features:
                raise ValueError(
                    f"TFDS dataset {self.name!r} has no feature {key!r}. Features: "
                    f"{', '.join(info.features.keys())}."
                )
        return x_key, y_key


def as_tfds(x):
    """Returns a `TFDS` for a `TFDS` object or a `"tfds:name[:split]"` string, else None."""
    if isinstance(x, TFDS):
        return x
    if isinstance(x, str) and x.startswith(PREFIX):
        name, _, split = x[len(PREFIX) :].partition(":")
        if not name:
            raise ValueError(f'Expected "tfds:name" or "tfds:name:split". Received: {x!r}')
        return TFDS(name, split or "train")
    return None


def load_tfds_split(source, y=None, validation_split=0.0):
    """Loads a `TFDS` source for a data adapter; returns `(dataset, class_names)`."""
    if y is not None:
        raise ValueError(f"Labels come from the TFDS dataset {source!r}; do not pass y.")
    if validation_split:
        raise ValueError(
            f"validation_split is not supported for TFDS data; pass a second split as "
            f'validation_data (e.g. "tfds:{source.name}:test" or '
            f'fk.data.TFDS({source.name!r}, split="train[90%:]")).'
        )
    return source.load()


def shuffled(ds, shuffle, seed, buffer_size=10_000):
    """Shuffles an unbatched dataset with a bounded buffer when `shuffle` is set."""
    return ds.shuffle(buffer_size, seed=seed, reshuffle_each_iteration=True) if shuffle else ds


def tfds_image_batches(ds, image_size, batch_size, shuffle=False, seed=None):
    """Resizes TFDS images of any size to `image_size` (values stay 0-255) and batches them.

    The model's own preprocessing then converts channels and normalises, as
    for any raw image.
    """
    import tensorflow as tf

    def resize(image, label):
        return tf.image.resize(image, image_size), label

    ds = shuffled(ds, shuffle, seed).map(resize, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
