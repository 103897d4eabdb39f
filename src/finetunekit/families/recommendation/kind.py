"""The `Embeddings` backbone: user and item towers for raw ids (recommendation).

`fk.backbones.Embeddings(users=..., items=..., dim=64)` holds two `IdEmbedding`
towers. Each maps raw ids (strings; the data pipeline turns int ids into
strings) to vectors inside the model, so a saved model takes the same raw ids
as in training.

Unknown ids: every tower has one extra row, row 0, for ids outside its
vocabulary. It is set to zeros and never trained (`fit` refuses unknown ids),
so at serving an unknown user scores items by the head's item bias alone (the
most popular items), and an unknown item scores by its user alone.
`recommend` and `evaluate` raise an error naming the unknown ids instead.

Pretrained tables: `pretrained="old.weights.h5"` (a previous model holding an
`Embeddings` backbone, or the backbone alone) copies each known id's row by
id, whatever order the vocabularies are in; ids the file does not know get
fresh random rows, which train as soon as their tower does (`unfreeze=`).
"""

import json

import keras
import numpy as np
from keras import ops

from finetunekit.core.kind import BackboneKind, check_layer_decay
from finetunekit.core.notices import warn_user
from finetunekit.families.recommendation.interactions import as_id_strings
from finetunekit.families.recommendation.pretrained_tables import copy_rows, load_pretrained_tables
from finetunekit.families.recommendation.side_features import (
    TextFeature,
    build_side_layers,
    item_vector_rows,
    layout_of,
    text_table,
)

#: Outputs of the Embeddings kind: `features` = stacked (user, item) vectors,
#: `query` = user vectors, `candidates` = the whole item table (one row per item).
ID_OUTPUTS = ("features", "query", "candidates")


def check_vocabulary(ids, what):
    """A list of unique id strings from `users=`/`items=` (a list, an array, a Series or an int n)."""
    if isinstance(ids, (int, np.integer)) and not isinstance(ids, bool):
        if ids < 1:
            raise ValueError(f"`{what}` must be at least 1 id. Received: {what}={ids}")
        ids = np.arange(int(ids))
    if ids is None or isinstance(ids, (str, bytes, dict, float)):
        raise ValueError(
            f"`{what}` must be the list of known {what[:-1]} ids (or their number). "
            f"Received: {what}={ids!r}"
        )
    values = as_id_strings(ids).reshape(-1)
    if not len(values):
        raise ValueError(f"`{what}` is empty: list the known {what[:-1]} ids.")
    _, first = np.unique(values, return_index=True)
    return values[np.sort(first)].tolist()  # repeated ids once, in their first order


@keras.saving.register_keras_serializable(package="finetunekit")
class IdEmbedding(keras.layers.Layer):
    """Raw ids -> vectors: a string lookup and an embedding table, row 0 for unknown ids.

    The vocabulary is saved next to the table in `.weights.h5` files, so
    that pretrained rows can later be found by id (`load_pretrained_tables`).

    Args:
        vocabulary: list of str. Known ids; id `vocabulary[i]` gets row `i + 1`.
        dim: int. Vector size.
        **kwargs: Standard `keras.layers.Layer` arguments.

    Returns:
        `(batch, dim)` vectors for `(batch,)` string ids.

    Example:
    ```python
    layer = fk.backbones.IdEmbedding(["u1", "u2"], dim=8)
    layer(np.array(["u2", "someone"]))   # row of "u2", zeros for the unknown id
    ```
    """

    def __init__(self, vocabulary, dim, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary = [str(v) for v in vocabulary]
        self.dim = int(dim)
        self.lookup = keras.layers.StringLookup(
            vocabulary=self.vocabulary, num_oov_indices=1, name=f"{self.name}_lookup"
        )

    def build(self, input_shape=None):
        if self.built:
            return
        self.embeddings = self.add_weight(
            shape=(len(self.vocabulary) + 1, self.dim), name="embeddings",
            initializer=keras.initializers.RandomNormal(stddev=0.05),
        )
        table = ops.convert_to_numpy(self.embeddings)
        table[0] = 0.0
        self.embeddings.assign(table)
        self.built = True

    def indices(self, ids):
        """Row of each id (0 for unknown ids)."""
        return self.lookup(ids)

    def call(self, ids):
        rows = ops.take(self.embeddings, self.lookup(ids), axis=0)
        return ops.cast(rows, self.compute_dtype)

    def table(self):
        """The rows of the known ids, `(len(vocabulary), dim)`, in vocabulary order."""
        return ops.cast(self.embeddings[1:], self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.dim)

    def save_own_variables(self, store):
        store["0"] = self.embeddings
        # JSON bytes as uint8: the weights store keeps numeric arrays only.
        about = {"name": self.name, "ids": self.vocabulary}
        store["vocabulary"] = np.frombuffer(json.dumps(about).encode(), "uint8")

    def load_own_variables(self, store):
        self.embeddings.assign(store["0"])

    def get_config(self):
        return {**super().get_config(), "vocabulary": self.vocabulary, "dim": self.dim}


@keras.saving.register_keras_serializable(package="finetunekit")
class Embeddings(keras.Model):
    """User and item towers for recommendation: raw ids in, vectors out.

    Pass it as `FineTuner(backbone=...)` with `fk.RetrievalHead` (top-k
    items for a user), `fk.RankingHead` (rating or click of a user-item
    pair), or `fk.ClassificationHead`/`fk.RegressionHead` on the pair.

    Args:
        users: list of user ids (str or int), or their number n (ids 0..n-1).
            Every user the model should know, new ones included.
        items: list of item ids, or their number. Every item it can recommend.
        dim: int. Embedding size. Defaults to 64. Must equal the pretrained one.
        pretrained: str or None. A `.weights.h5` (or `.keras`) file of a
            previous model with an `Embeddings` backbone: rows of known ids
            are copied by id; other ids get fresh rows. Defaults to None.
        item_vectors: dict `{item id: vector}`, a DataFrame indexed by item
            id, or None. Starting rows for items, e.g. sentence embeddings of
            their titles or descriptions (reduced to `dim` by PCA); rows from
            `pretrained` take precedence. Defaults to None.
        user_features, item_features: dict `{feature name: values}` or a
            DataFrame indexed by id (one feature per column), or None.
            Categorical side features stored in the model: `values` is a
            list with one value per id in `users=`/`items=` order, or a dict
            / Series `{id: value}`; a value is a category, a list of
            categories (e.g. a movie's genres; their embeddings are
            averaged) or None. Each feature learns its own embedding table,
            added to the id's vector. Defaults to None.
        item_text: list (in `items=` order), dict or Series `{item id:
            text}`, or None. Item text embedded once by `text_encoder` and
            stored, frozen, in the model; a learned projection of it is
            added to the item's vector. Defaults to None.
        text_encoder: what embeds `item_text`: a keras-hub text preset name
            or folder (e.g. the offline MiniLM), a `(backbone, preprocessor)`
            pair, or a callable texts -> `(n, width)` array. Not saved (the
            text vectors are). Defaults to None.
        feature_layout: dict or None. The side-feature table shapes of a
            saved model (written by `get_config`; not passed by hand).
        **kwargs: Standard `keras.Model` arguments.

    Example:
    ```python
    backbone = fk.backbones.Embeddings(users=frame.user.unique(), items=frame.item.unique(),
                                       dim=32, pretrained="mf.weights.h5")
    rec = fk.FineTuner(backbone=backbone, head=fk.RetrievalHead(k=10), unfreeze="all")
    with_genres = fk.backbones.Embeddings(users=users, items=movies.index, dim=32,
                                          item_features={"genres": movies.genres},
                                          item_text=movies.title, text_encoder=minilm_folder)
    ```
    """

    def __init__(self, users, items, dim=64, pretrained=None, item_vectors=None,
                 user_features=None, item_features=None, item_text=None, text_encoder=None,
                 feature_layout=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise ValueError(f"`dim` must be a positive int. Received: dim={dim!r}")
        self.users = check_vocabulary(users, "users")
        self.items = check_vocabulary(items, "items")
        self.dim = int(dim)
        self.user_tower = IdEmbedding(self.users, self.dim, name="user_embedding")
        self.item_tower = IdEmbedding(self.items, self.dim, name="item_embedding")
        self.user_tower.build()
        self.item_tower.build()
        self._add_side_features(user_features, item_features, item_text, text_encoder,
                                feature_layout or {})
        self.built = True
        started = {"users": set(), "items": set()}
        if item_vectors is not None:
            started["items"] = copy_rows(self.item_tower, *item_vector_rows(item_vectors, self.dim))
        if pretrained is not None:
            copied = load_pretrained_tables(self, pretrained)
            started = {what: started[what] | copied[what] for what in started}
        #: How many ids of each tower start from random rows (told once, if their tower is frozen).
        self.fresh = {"users": len(self.users) - len(started["users"]),
                      "items": len(self.items) - len(started["items"])}

    def _add_side_features(self, user_features, item_features, item_text, text_encoder, layout):
        self.user_side = build_side_layers(self.users, self.dim, user_features, "user_features",
                                           layout.get("users"))
        self.item_side = build_side_layers(self.items, self.dim, item_features, "item_features",
                                           layout.get("items"))
        if item_text is None and text_encoder is not None:
            raise ValueError("`text_encoder` embeds `item_text`; pass item_text=... too.")
        table = None if item_text is None else text_table(item_text, self.items, text_encoder)
        text_dim = layout.get("item_text") if table is None else table.shape[1]
        self.text_dim = text_dim
        if text_dim:
            text = TextFeature(len(self.items) + 1, text_dim, self.dim, name="item_text")
            text.build()
            if table is not None:
                text.set_vectors(table)
            self.item_side = [*self.item_side, text]

    def _vectors(self, tower, side, ids):
        vectors = tower(ids)
        if side:
            rows = tower.indices(ids)
            for layer in side:
                vectors = vectors + layer(rows)
        return vectors

    def user_vectors(self, ids):
        """`(batch, dim)` user vectors of raw user ids (side features included)."""
        return self._vectors(self.user_tower, self.user_side, ids)

    def item_vectors_of(self, ids):
        """`(batch, dim)` item vectors of raw item ids (side features included)."""
        return self._vectors(self.item_tower, self.item_side, ids)

    def item_table(self):
        """Every item's vector, `(len(items), dim)`, in vocabulary order (side features included)."""
        table = self.item_tower.table()
        if self.item_side:
            rows = ops.arange(1, len(self.items) + 1, dtype="int32")
            for layer in self.item_side:
                table = table + layer(rows)
        return table

    def call(self, inputs):
        outputs = {"candidates": self.item_table()}
        if "user" in inputs:
            outputs["user"] = self.user_vectors(inputs["user"])
        if "item" in inputs:
            outputs["item"] = self.item_vectors_of(inputs["item"])
        return outputs

    def get_config(self):
        config = {"name": self.name, "trainable": self.trainable, "users": self.users,
                  "items": self.items, "dim": self.dim}
        categorical = [layer for layer in self.item_side if layer.name != "item_text"]
        if self.user_side or self.item_side:
            config["feature_layout"] = {"users": layout_of(self.user_side),
                                        "items": layout_of(categorical), "item_text": self.text_dim}
        return config

    @classmethod
    def from_config(cls, config):
        model = cls(**config)
        model.fresh = {}  # a saved model: its weights are loaded next, no row stays fresh
        return model


class EmbeddingsBackbone(BackboneKind):
    """The backbone kind of `fk.backbones.Embeddings` (raw user and item ids).

    Blocks for `unfreeze=N`: `items` then `users`, so `unfreeze=1` trains the
    user tower with the item tower frozen, and `"all"` (or 2) both.
    """

    name = "embeddings"
    modality = "ids"
    description = "fk.backbones.Embeddings(users=..., items=...)"
    priority = 20
    provides = ID_OUTPUTS
    #: Embedding tables learn fast at a high rate; fine-tuned pretrained ones a little slower.
    default_learning_rates = (1e-2, 5e-3)

    @classmethod
    def matches(cls, backbone):
        return isinstance(backbone, Embeddings)

    def __init__(self, backbone, weights=None, input_shape=None, preprocessing="auto",
                 policy="float32", architecture=None, layer_decay=None, **options):
        if options:
            raise ValueError(
                f"{', '.join(sorted(options))} apply to text (keras-hub) backbones only; "
                "fk.backbones.Embeddings takes raw ids."
            )
        if weights not in (None, "imagenet", "pretrained"):
            raise ValueError(
                "An Embeddings backbone loads pretrained tables with "
                f"Embeddings(pretrained=...), not weights=. Received: weights={weights!r}"
            )
        self.layer_decay = check_layer_decay(layer_decay)
        self.model = backbone
        if policy != "float32":
            for layer in (backbone.user_tower, backbone.item_tower, *backbone.user_side,
                          *backbone.item_side):
                layer.dtype_policy = policy

    def groups(self):
        return [("items", [self.model.item_tower, *self.model.item_side]),
                ("users", [self.model.user_tower, *self.model.user_side])]

    def apply_unfreeze(self, unfreeze):
        blocks = super().apply_unfreeze(unfreeze)
        for what, tower in (("items", self.model.item_tower), ("users", self.model.user_tower)):
            fresh = self.model.fresh.get(what, 0)
            if fresh and not tower.trainable:

                warn_user(
                    f"{fresh} {what} have fresh (untrained) rows but the {what[:-1]} tower is "
                    'frozen, so they will not learn. Pass unfreeze="all" (or unfreeze=1 for '
                    "the user tower) to train them.",
                )
        self.model.fresh = {}  # said once, when the FineTuner is built
        return blocks

    def data_pipeline(self, head, augmentation=()):
        from finetunekit.families.recommendation.pipeline import IdPipeline

        return IdPipeline(head, self.model.users, self.model.items)

    def cache_blocker(self):
        return "an Embeddings backbone has no features worth caching (its towers are lookups)"

    def serving_signature(self):
        """Raw string ids: `user` (and `item` for heads that score pairs), shape `(batch,)`."""
        import tensorflow as tf

        return {name: tf.TensorSpec((None,), tf.string, name=name) for name in self.input_names}

    def build(self, needs=("features",), augmentation=()):
        """`"user"` (and, for `features`, `"item"`) string inputs -> towers -> named outputs."""
        unknown = set(needs) - set(ID_OUTPUTS) - {"padding_mask"}  # no padding: nothing to mask
        if unknown:
            raise ValueError(
                f"An Embeddings backbone provides {', '.join(ID_OUTPUTS)}; this head asks for "
                f"{sorted(unknown)}."
            )
        if augmentation:
            raise ValueError("augment= applies to images; remove it for an Embeddings backbone.")
        inputs = {"user": keras.Input(shape=(), dtype="string", name="user")}
        if "features" in needs:
            inputs["item"] = keras.Input(shape=(), dtype="string", name="item")
        self.input_names = tuple(inputs)
        towers = self.model(inputs)
        outputs = {"query": towers["user"], "candidates": towers["candidates"]}
        if "features" in needs:
            outputs["features"] = ops.stack([towers["user"], towers["item"]], axis=1)
        return inputs, outputs
