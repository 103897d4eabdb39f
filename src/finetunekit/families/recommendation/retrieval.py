"""Two-tower retrieval: score every item for a user, recommend the top k.

`RetrievalHead` sits on an `fk.backbones.Embeddings` backbone: the user tower
gives the query vector, the item tower the whole catalogue (`candidates`);
a user's score for an item is their dot product plus a learned item bias
(the popularity prior, and the whole score of an unknown user). Training is
a softmax over the full catalogue (sparse categorical cross-entropy), so
there are no sampled negatives to correct for; top-k retrieval uses
`keras_rs.layers.BruteForceRetrieval` and the report keras-rs ranking metrics.
"""

import keras
import numpy as np
from keras import ops

from finetunekit.core.head import Head, as_outputs
from finetunekit.core.reports import Report

#: Score given to excluded (already seen) items; below any real score.
EXCLUDED = -1e9


def import_keras_rs():
    """keras-rs, or an ImportError saying how to install it."""
    try:
        import keras_rs
    except ImportError as error:  # pragma: no cover - keras-rs is in the test extra
        raise ImportError(
            "Recommendation heads need keras-rs: pip install 'finetunekit[recommend]'"
        ) from error
    return keras_rs


def check_k(k, num_items=None):
    """Validates `k` (a positive int, at most the number of items)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"`k` must be a positive int. Received: k={k!r}")
    if num_items is not None and k > num_items:
        raise ValueError(
            f"k={k} is larger than the {num_items} items the model knows. Pass k <= {num_items}."
        )
    return int(k)


def ranking_section(scores, targets, k):
    """HR@k, NDCG@k and MRR (keras-rs metrics) of item scores against the true item of each row."""
    keras_rs = import_keras_rs()
    metrics = {
        f"hr@{k}": keras_rs.metrics.RecallAtK(k=k),
        f"ndcg@{k}": keras_rs.metrics.NDCG(k=k),
        "mrr": keras_rs.metrics.MeanReciprocalRank(),
    }
    targets = np.asarray(targets).reshape(-1).astype("int64")
    for start in range(0, len(targets), 1024):
        part = np.asarray(scores[start:start + 1024], "float32")
        relevance = np.zeros_like(part)
        relevance[np.arange(len(part)), targets[start:start + 1024]] = 1.0
        for metric in metrics.values():
            metric.update_state(relevance, part)
    values = {name: float(metric.result()) for name, metric in metrics.items()}
    return Report("retrieval", values, {}, None, [], len(targets))


def seen_rows(seen, users):
    """`(rows, item indices)` to exclude: the items each row's user interacted with."""
    rows, columns = [], []
    for row, user in enumerate(users):
        for column in seen.get(str(user), ()):
            rows.append(row)
            columns.append(column)
    return np.asarray(rows, "int64"), np.asarray(columns, "int64")


@keras.saving.register_keras_serializable(package="finetunekit")
class RetrievalHead(Head):
    """Two-tower retrieval head: a user's scores over every item; `recommend` gives the top k.

    Needs an `fk.backbones.Embeddings` backbone. `fit(interactions)` learns
    to rank each interaction's item first for its user (the item column is
    the target, the item vocabulary the class names). `predict` returns
    `(n, num_items)` scores; `predict_labels` the top-k item ids.

    Args:
        k: int. How many items `predict_labels`, `recommend` and the report
            (HR@k, NDCG@k) look at. Defaults to 10.
        item_bias: bool. Learn one bias per item (popularity). Defaults to True.
        **kwargs: Standard `keras.layers.Layer` arguments.

    Returns:
        Scores of shape `(batch, num_items)`, float32.

    Example:
    ```python
    rec = fk.FineTuner(backbone=fk.backbones.Embeddings(users=users, items=items, dim=32),
                       head=fk.RetrievalHead(k=10), unfreeze="all")
    rec.fit(train_interactions, epochs=5)
    rec.recommend(["u1", "u2"], k=10)              # [[item ids], [item ids]]
    rec.evaluate(test_interactions, report=True)   # HR@10, NDCG@10, MRR
    ```
    """

    needs = ("query", "candidates")
    interaction_target = "item"
    task_methods = ("recommend", "evaluate_ranking")

    def __init__(self, k=10, item_bias=True, **kwargs):
        super().__init__(**kwargs)
        self.k = check_k(k)
        self.item_bias = bool(item_bias)
        self.seen = {}

    def build(self, input_shape):
        num_items = input_shape["candidates"][0]
        self.bias = self.add_weight(
            shape=(num_items,), initializer="zeros", name="item_bias", dtype="float32",
            trainable=self.item_bias,
        )

    def call(self, outputs, training=None):
        outputs = as_outputs(outputs)
        query = ops.cast(outputs["query"], "float32")
        candidates = ops.cast(outputs["candidates"], "float32")
        return ops.matmul(query, ops.transpose(candidates)) + self.bias

    def compute_output_shape(self, input_shape):
        return (input_shape["query"][0], input_shape["candidates"][0])

    def default_loss(self, label_smoothing=0.0):
        if label_smoothing:
            raise ValueError("`label_smoothing` does not apply to a RetrievalHead.")
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def default_metrics(self):
        return [keras.metrics.SparseTopKCategoricalAccuracy(k=self.k, name=f"hr@{self.k}")]

    def encode_targets(self, y, class_names=None):
        """Item ids -> their positions in the item vocabulary (`class_names`)."""
        from finetunekit.families.recommendation.interactions import as_id_strings

        if class_names is None:
            raise ValueError("A RetrievalHead learns its items from an Embeddings backbone.")
        items = as_id_strings(y).reshape(-1)
        position = {name: i for i, name in enumerate(class_names)}
        unknown = sorted({str(i) for i in items if i not in position})
        if unknown:
            raise ValueError(
                f"{len(unknown)} item id(s) are not known to the model: "
                f"{', '.join(repr(u) for u in unknown[:5])}. Add them to "
                "fk.backbones.Embeddings(items=...)."
            )
        return np.array([position[i] for i in items], "int64"), list(class_names)

    def remember_seen(self, users, positions):
        """Keeps which items (positions) each user interacted with in `fit`; `recommend` excludes them."""
        import pandas as pd

        pairs = pd.DataFrame({"user": np.asarray(users).astype(str), "item": positions})
        for user, items in pairs.groupby("user", sort=False)["item"]:
            self.seen.setdefault(user, set()).update(items.tolist())

    def decode(self, outputs, class_names=None, context=None):
        top = np.argsort(-np.asarray(outputs), axis=-1, kind="stable")[:, : self.k]
        if class_names is None:
            return top.tolist()
        return [[class_names[i] for i in row] for row in top]

    def serving_outputs(self, tuner, outputs, input_size=None):
        """The exported endpoint's `{"items": (n, k) item ids, "scores": (n, k)}`, best first.

        Nothing is excluded (what users saw is not part of the model); an
        unknown user gets the items with the highest bias (the most popular).
        """
        import tensorflow as tf

        items = _items(tuner)
        scores, top = tf.math.top_k(outputs, k=min(self.k, len(items)))
        return {"items": tf.gather(tf.constant(items), top), "scores": scores}

    def report(self, outputs, targets, class_names=None):
        return ranking_section(outputs, targets, self.k)

    def make_report(self, tuner, x, y=None, batch_size=None, exclude_seen=None, seen=None,
                    **options):
        """`evaluate(test, report=True, exclude_seen=True)`: the report with seen items masked.

        Without `exclude_seen` or `seen`, None: the plain report ranks each
        test item among all items. With them, `evaluate_ranking` ranks it
        among the items its user did not interact with in `fit` (or in `seen`).
        """
        if exclude_seen is None and seen is None:
            return None
        if y is not None or options:
            given = ["y"] * (y is not None) + sorted(options)
            raise ValueError(
                f"evaluate(report=True, exclude_seen=...) reads user and item columns of "
                f"interactions; remove {', '.join(given)}."
            )
        return self.evaluate_ranking(tuner, x, exclude_seen=exclude_seen is not False, seen=seen)

    def _seen(self, tuner, exclude_seen, seen):
        if not exclude_seen:
            return {}
        if seen is None:
            return self.seen
        return _seen_of(seen, {name: i for i, name in enumerate(_items(tuner))})

    def recommend(self, tuner, user_ids, k=None, exclude_seen=True, seen=None,
                  unknown_ids="error"):
        """The top-k item ids for each user (a task method: `ft.recommend(user_ids)`).

        Scores are the user vector's dot product with every item vector plus
        the item bias, retrieved with `keras_rs.layers.BruteForceRetrieval`.

        Args:
            tuner: the `FineTuner` (passed for you).
            user_ids: a list of user ids (or a DataFrame with a user column).
            k: int or None. Defaults to the head's `k`.
            exclude_seen: bool. Leave out items each user interacted with in
                `fit` (or in `seen`). Defaults to True.
            seen: interactions (DataFrame, dict or CSV) to exclude instead of
                those of `fit`, e.g. after loading a saved model. Defaults to None.
            unknown_ids: `"error"` or `"fallback"` (unknown users get the
                items with the highest bias: the most popular). Defaults to `"error"`.

        Returns:
            A list (one per user) of lists of `k` item ids, best first (fewer
            when a user has already seen all but a few items).
        """
        keras_rs = import_keras_rs()
        items = _items(tuner)
        k = check_k(self.k if k is None else k, len(items))
        users = tuner.prepare(user_ids, None, require_labels=False, unknown_ids=unknown_ids)
        users = users.train.x["user"]
        excluded = self._seen(tuner, exclude_seen, seen)
        most = max([len(excluded.get(u, ())) for u in users] + [0])
        towers = tuner.backbone
        query = ops.convert_to_numpy(ops.cast(towers.user_vectors(users), "float32"))
        table = ops.convert_to_numpy(ops.cast(towers.item_table(), "float32"))
        bias = ops.convert_to_numpy(self.bias)[:, None]
        # [user, 1] . [item, bias] = user . item + bias: one brute-force search over the catalogue.
        retrieval = keras_rs.layers.BruteForceRetrieval(
            candidate_embeddings=np.concatenate([table, bias], axis=1),
            k=min(len(items), k + most), return_scores=False,
        )
        top = np.asarray(retrieval(np.concatenate([query, np.ones((len(users), 1))], axis=1)))
        found = []
        for user, row in zip(users, top):
            skip = excluded.get(user, ())
            found.append([items[i] for i in row if i not in skip][:k])
        return found

    def evaluate_ranking(self, tuner, interactions, k=None, exclude_seen=True, seen=None):
        """HR@k, NDCG@k and MRR on held-out interactions, seen items excluded (a task method).

        Each test interaction's item is ranked among all items, less those its
        user interacted with in `fit` (or in `seen`); the test item itself is
        never excluded.

        Args:
            tuner: the `FineTuner` (passed for you).
            interactions: test interactions (user, item).
            k: int or None. Defaults to the head's `k`.
            exclude_seen: bool. Defaults to True.
            seen: interactions to exclude instead of those of `fit`.

        Returns:
            A `fk.Report` with `hr@k`, `ndcg@k` and `mrr`.
        """
        from finetunekit.families.recommendation.interactions import read_interactions

        frame = read_interactions(interactions)
        k = check_k(self.k if k is None else k, len(_items(tuner)))
        targets, _ = self.encode_targets(frame["item"], _items(tuner))
        users = frame["user"].to_numpy().astype(str)
        prepared = tuner.prepare(users, None, require_labels=False)
        scores = np.array(keras.Model.predict(tuner, prepared.train.x, verbose=0))
        rows, columns = seen_rows(self._seen(tuner, exclude_seen, seen), users)
        keep = columns != targets[rows] if len(rows) else np.zeros(0, bool)
        scores[rows[keep], columns[keep]] = EXCLUDED
        return ranking_section(scores, targets, k)

    def get_config(self):
        return {**super().get_config(), "k": self.k, "item_bias": self.item_bias}


def _items(tuner):
    return list(tuner.class_names or tuner.backbone.items)


def _seen_of(interactions, position):
    """`{user: {item positions}}` of interactions (DataFrame, dict or CSV)."""
    from finetunekit.families.recommendation.interactions import read_interactions

    frame = read_interactions(interactions)
    seen = {}
    for user, item in zip(frame["user"], frame["item"]):
        if item in position:
            seen.setdefault(user, set()).add(position[item])
    return seen
