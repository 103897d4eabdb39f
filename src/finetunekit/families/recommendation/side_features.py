"""Side features of the recommendation towers: categorical features and item text, stored in the model.

`fk.backbones.Embeddings(..., item_features={"genre": ...}, item_text=titles,
text_encoder=...)` adds, to each id's vector, one learned embedding per
categorical feature (the mean of its categories' rows, for features with
several values per id such as genres) and a learned projection of a fixed
text embedding. The per-id values are tables inside the model, looked up by
the id's row, so the saved model still takes raw ids: serving is training.

Row 0 of every table belongs to unknown ids and holds no category and no
text, so an unknown id still gets a zero vector.
"""

import os

import keras
import numpy as np
from keras import ops

from finetunekit.core.presets import load_text_encoder

#: Text embeddings are computed in batches of this many texts.
TEXT_BATCH = 64


def _is_missing(value):
    return value is None or (isinstance(value, float) and value != value)


def _values_by_id(values, ids, what):
    """The value of each of `ids` (None where absent) from a list in `ids` order, a dict or a Series."""
    if hasattr(values, "index") and hasattr(values, "to_dict") and not hasattr(values, "columns"):
        values = values.to_dict()
    if isinstance(values, dict):
        found = {str(key): value for key, value in values.items()}
        return [found.get(i) for i in ids]
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        raise ValueError(
            f"`{what}` must be a list with one value per id (in the vocabulary's order), a "
            f"dict {{id: value}} or a pandas Series indexed by id. Received: {type(values).__name__}"
        )
    values = list(values)
    if len(values) != len(ids):
        raise ValueError(
            f"`{what}` has {len(values)} values but there are {len(ids)} ids. Pass one value per "
            "id, in the order of users=/items=, or a dict {id: value} (ids left out get none)."
        )
    return values


def _categories_of(value):
    """The categories (str) of one id's value: none, one, or several (a list, tuple, set or array)."""
    if _is_missing(value):
        return []
    if isinstance(value, (list, tuple, set, frozenset, np.ndarray)):
        return [str(v) for v in value if not _is_missing(v)]
    return [str(value)]


def categorical_table(values, ids, what):
    """`(categories, index)` of one feature: its sorted categories and an `(len(ids) + 1, width)` table.

    Row `r + 1` of `index` holds the category numbers (1-based; 0 = none) of
    `ids[r]`; row 0 (unknown ids) holds none.
    """
    per_id = [_categories_of(v) for v in _values_by_id(values, ids, what)]
    categories = sorted({c for found in per_id for c in found})
    if not categories:
        raise ValueError(f"`{what}` gives no category to any known id; check the ids it is keyed by.")
    number = {c: i + 1 for i, c in enumerate(categories)}
    width = max(len(found) for found in per_id)
    index = np.zeros((len(ids) + 1, width), "int32")
    for row, found in enumerate(per_id, start=1):
        index[row, : len(found)] = [number[c] for c in found]
    return categories, index


@keras.saving.register_keras_serializable(package="finetunekit")
class CategoricalFeature(keras.layers.Layer):
    """One categorical side feature: a tower row -> the mean embedding of that id's categories.

    Args:
        categories: list of str. The feature's categories; category `i` gets row `i + 1`.
        num_rows: int. Rows of the tower (its ids plus the unknown row 0).
        width: int. The most categories one id has.
        dim: int. Vector size (the tower's).
        **kwargs: Standard `keras.layers.Layer` arguments.

    Returns:
        `(batch, dim)` vectors for `(batch,)` tower rows; zeros for ids with no category.

    Example:
    ```python
    layer = fk.backbones.CategoricalFeature(["comedy", "drama"], num_rows=3, width=2, dim=8)
    layer.set_index(np.array([[0, 0], [1, 0], [1, 2]]))   # row 2: comedy and drama
    layer(np.array([1, 2]))
    ```
    """

    def __init__(self, categories, num_rows, width, dim, **kwargs):
        super().__init__(**kwargs)
        self.categories = [str(c) for c in categories]
        self.num_rows, self.width, self.dim = int(num_rows), int(width), int(dim)

    def build(self, input_shape=None):
        if self.built:
            return
        self.index = self.add_weight(
            shape=(self.num_rows, self.width), dtype="int32", initializer="zeros",
            trainable=False, name="index",
        )
        self.embeddings = self.add_weight(
            shape=(len(self.categories) + 1, self.dim), name="embeddings",
            initializer=keras.initializers.RandomNormal(stddev=0.05),
        )
        table = ops.convert_to_numpy(self.embeddings)
        table[0] = 0.0  # "no category": never looked up with a weight
        self.embeddings.assign(table)
        self.built = True

    def set_index(self, index):
        """Stores the `(num_rows, width)` category numbers of every row."""
        self.index.assign(np.asarray(index, "int32"))

    def call(self, rows):
        numbers = ops.take(self.index, ops.cast(rows, "int32"), axis=0)
        vectors = ops.cast(ops.take(self.embeddings, numbers, axis=0), self.compute_dtype)
        present = ops.expand_dims(ops.cast(numbers > 0, self.compute_dtype), -1)
        return ops.sum(vectors * present, axis=1) / ops.maximum(ops.sum(present, axis=1), 1.0)

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.dim)

    def get_config(self):
        return {**super().get_config(), "categories": self.categories, "num_rows": self.num_rows,
                "width": self.width, "dim": self.dim}


@keras.saving.register_keras_serializable(package="finetunekit")
class TextFeature(keras.layers.Layer):
    """Item text as a fixed side input: a stored text embedding per row, projected to the tower's size.

    The text vectors are computed once (`encode_texts`) and kept, frozen, in
    the model; only the projection trains.

    Args:
        num_rows: int. Rows of the tower (its ids plus the unknown row 0).
        text_dim: int. Width of the text embeddings.
        dim: int. Vector size (the tower's).
        **kwargs: Standard `keras.layers.Layer` arguments.

    Returns:
        `(batch, dim)` vectors for `(batch,)` tower rows; zeros for ids without text.

    Example:
    ```python
    layer = fk.backbones.TextFeature(num_rows=3, text_dim=384, dim=8)
    layer.set_vectors(np.zeros((3, 384)))
    layer(np.array([1, 2]))
    ```
    """

    def __init__(self, num_rows, text_dim, dim, **kwargs):
        super().__init__(**kwargs)
        self.num_rows, self.text_dim, self.dim = int(num_rows), int(text_dim), int(dim)
        self.projection = keras.layers.Dense(self.dim, use_bias=False, name="projection")

    def build(self, input_shape=None):
        if self.built:
            return
        self.vectors = self.add_weight(
            shape=(self.num_rows, self.text_dim), initializer="zeros", trainable=False,
            name="vectors",
        )
        self.projection.build((None, self.text_dim))
        self.built = True

    def set_vectors(self, vectors):
        """Stores the `(num_rows, text_dim)` text embeddings of every row."""
        self.vectors.assign(np.asarray(vectors, "float32"))

    def call(self, rows):
        texts = ops.take(self.vectors, ops.cast(rows, "int32"), axis=0)
        return ops.cast(self.projection(texts), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.dim)

    def get_config(self):
        return {**super().get_config(), "num_rows": self.num_rows, "text_dim": self.text_dim,
                "dim": self.dim}


def _keras_hub_encoder(text_encoder):
    """`(backbone, preprocessor)` of a keras-hub preset name or folder, or of a given pair."""
    if isinstance(text_encoder, tuple) and len(text_encoder) == 2:
        return text_encoder
    if not isinstance(text_encoder, (str, os.PathLike)):
        raise ValueError(
            "`text_encoder` must be a keras-hub text preset name or folder, a (backbone, "
            f"preprocessor) pair or a callable texts -> vectors. Received: {type(text_encoder).__name__}"
            " (a keras-hub Backbone needs its preprocessor: pass the pair)."
        )
    return load_text_encoder(os.fspath(text_encoder), "pretrained", "float32", None, None)


def _mean_pooled(backbone, preprocessor, texts):
    """Mean of the sequence output over real tokens, L2-normalised (the sentence-embedding recipe)."""
    inputs = preprocessor(keras.ops.convert_to_tensor(texts))
    outputs = backbone(inputs)
    features = outputs["sequence_output"] if isinstance(outputs, dict) else outputs
    mask = ops.expand_dims(ops.cast(inputs["padding_mask"], "float32"), -1)
    pooled = ops.sum(ops.cast(features, "float32") * mask, axis=1) / ops.maximum(
        ops.sum(mask, axis=1), 1.0
    )
    return ops.convert_to_numpy(pooled / ops.maximum(ops.norm(pooled, axis=-1, keepdims=True), 1e-12))


def encode_texts(texts, text_encoder):
    """Embeds texts once with a frozen encoder; returns a float32 `(len(texts), width)` array.

    Args:
        texts: list of str.
        text_encoder: a callable `list of str -> (n, width) array` (any
            sentence encoder), a keras-hub text preset name or preset folder
            (e.g. the offline MiniLM's `get_model_path()`), or a
            `(keras_hub Backbone, preprocessor)` pair. keras-hub encoders are
            mean-pooled over real tokens and L2-normalised.

    Returns:
        A float32 array, one row per text.

    Example:
    ```python
    vectors = encode_texts(["Toy Story (1995)", "Heat (1995)"], minilm.get_model_path())
    ```
    """
    if text_encoder is None:
        raise ValueError(
            "`item_text` needs `text_encoder=`: a keras-hub text preset or folder (e.g. the "
            "offline MiniLM), a (backbone, preprocessor) pair, or a callable texts -> vectors."
        )
    if callable(text_encoder) and not isinstance(text_encoder, keras.layers.Layer):
        vectors = np.asarray(text_encoder(list(texts)), "float32")
    else:
        backbone, preprocessor = _keras_hub_encoder(text_encoder)
        parts = [_mean_pooled(backbone, preprocessor, list(texts[i: i + TEXT_BATCH]))
                 for i in range(0, len(texts), TEXT_BATCH)]
        vectors = np.concatenate(parts).astype("float32")
    if vectors.ndim != 2 or len(vectors) != len(texts) or not np.all(np.isfinite(vectors)):
        raise ValueError(
            f"`text_encoder` must return one finite vector per text: {len(texts)} texts gave an "
            f"array of shape {vectors.shape}."
        )
    return vectors


def text_table(item_text, ids, text_encoder):
    """The `(len(ids) + 1, width)` text embeddings of `ids` (zeros for row 0 and for ids without text)."""
    per_id = _values_by_id(item_text, ids, "item_text")
    rows = [r for r, text in enumerate(per_id) if not _is_missing(text) and str(text).strip()]
    if not rows:
        raise ValueError("`item_text` gives no text to any known item; check the ids it is keyed by.")
    vectors = encode_texts([str(per_id[r]) for r in rows], text_encoder)
    table = np.zeros((len(ids) + 1, vectors.shape[1]), "float32")
    table[np.asarray(rows) + 1] = vectors
    return table


def build_side_layers(ids, dim, features, what, layout=None):
    """The `CategoricalFeature` layers of one tower, from feature values or a saved layout.

    Args:
        ids: list of str. The tower's vocabulary.
        dim: int. Vector size.
        features: dict `{name: values}`, a DataFrame indexed by id (one
            feature per column), or None.
        what: `"user_features"` or `"item_features"` (for messages).
        layout: dict `{name: {"categories": [...], "width": w}}` of a saved
            model (tables filled when its weights load), used when `features` is None.

    Returns:
        A list of built layers, named `"<what>_<name>"`.
    """
    if features is not None and hasattr(features, "columns"):
        features = {str(c): features[c] for c in features.columns}
    if features is not None and not isinstance(features, dict):
        raise ValueError(
            f"`{what}` must be a dict {{feature name: values}} or a DataFrame indexed by id. "
            f"Received: {type(features).__name__}"
        )
    layers = []
    for name, values in (features or {}).items():
        categories, index = categorical_table(values, ids, f"{what}[{name!r}]")
        layer = CategoricalFeature(categories, len(ids) + 1, index.shape[1], dim,
                                   name=f"{what}_{name}")
        layer.build()
        layer.set_index(index)
        layers.append(layer)
    if features is None:
        for name, spec in (layout or {}).items():
            layer = CategoricalFeature(spec["categories"], len(ids) + 1, spec["width"], dim,
                                       name=f"{what}_{name}")
            layer.build()
            layers.append(layer)
    return layers


def layout_of(layers):
    """`{name: {"categories": [...], "width": w}}` of `CategoricalFeature` layers (for the config)."""
    return {layer.name.split("_features_", 1)[1]: {"categories": layer.categories,
                                                    "width": layer.width} for layer in layers}


def item_vector_rows(item_vectors, dim):
    """`(ids, rows)` of `item_vectors` (a dict or a DataFrame indexed by id), reduced to `dim` columns.

    Wider vectors (e.g. 384-wide sentence embeddings of item titles) are
    reduced to their top `dim` principal components; the rows are then
    scaled to the spread of a fresh embedding table.
    """
    if hasattr(item_vectors, "index") and hasattr(item_vectors, "to_numpy"):
        ids, rows = list(item_vectors.index), item_vectors.to_numpy()
    elif isinstance(item_vectors, dict):
        ids, rows = list(item_vectors), np.stack([np.asarray(v) for v in item_vectors.values()])
    else:
        raise ValueError(
            "`item_vectors` must be a dict {item id: vector} or a DataFrame indexed by item id. "
            f"Received: {type(item_vectors).__name__}"
        )
    rows = np.asarray(rows, "float64").reshape(len(ids), -1)
    if rows.shape[1] < dim or not np.all(np.isfinite(rows)):
        raise ValueError(
            f"`item_vectors` must be finite and at least dim={dim} wide; they are "
            f"{rows.shape[1]} wide. Pass dim={rows.shape[1]} or less."
        )
    rows = rows - rows.mean(axis=0)
    if rows.shape[1] > dim:
        _, _, components = np.linalg.svd(rows, full_matrices=False)
        rows = rows @ components[:dim].T
    return [str(i) for i in ids], (rows * (0.05 / max(rows.std(), 1e-12))).astype("float32")
