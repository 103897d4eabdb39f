"""The id pipeline: interactions (user, item, rating, timestamp) -> named string-id inputs.

What the model reads depends on the head: a head that scores (user, item)
pairs (`needs` holds `"features"`: `RankingHead`, `ClassificationHead`,
`RegressionHead`) takes a `user` and an `item` input; a retrieval head
(`RetrievalHead`) takes only `user` and learns to predict the item, so its
targets are the item column and its class names the item vocabulary.
"""

import os

import numpy as np

from finetunekit.core.data.frames import is_dataframe
from finetunekit.core.data.pipeline import (
    Batches,
    Prepared,
    build_splits,
    check_lengths,
    check_sample_weight,
    is_dataset,
    no_split_for_datasets,
    take,
)
from finetunekit.families.recommendation.interactions import as_id_strings, read_interactions


def input_names(needs):
    """The id inputs of a model whose head needs `needs`."""
    return ("user", "item") if "features" in needs else ("user",)


def check_known_ids(ids, vocabulary, what):
    """Raises a ValueError naming the ids that are not in `vocabulary`."""
    known = set(vocabulary)
    import pandas as pd

    unknown = sorted({str(i) for i in pd.unique(np.asarray(ids))} - known)
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        raise ValueError(
            f"{len(unknown)} {what} id(s) are not known to the model: {shown}. Add them to "
            f"fk.backbones.Embeddings({what}s=...) and fine-tune, or pass unknown_ids=\"fallback\" "
            f"to score them with the shared unknown-{what} row (item popularity for users)."
        )


class IdPipeline:
    """Prepares interactions for a model with an `fk.backbones.Embeddings` backbone.

    Args:
        head: the FineTuner's head.
        users, items: lists of str. The backbone's vocabularies.
    """

    def __init__(self, head, users, items):
        self.head = head
        self.users = users
        self.items = items
        self.names = input_names(head.needs)
        self.target = getattr(head, "interaction_target", "rating")

    def _columns(self, x, x_col):
        """`{column: values}` of interactions, or `{"user": ids}` for a list of users."""
        if x is None:
            raise ValueError(
                "x must be interactions: a DataFrame, a dict of columns or a CSV file with "
                "user and item columns (or a list of user ids to predict for). Received: None."
            )
        if isinstance(x, (dict, str, os.PathLike)) or is_dataframe(x):
            frame = read_interactions(x, user_col=x_col, require_item="item" in self.names)
            return {c: frame[c].to_numpy() for c in frame.columns}
        values = np.asarray(x.to_numpy() if hasattr(x, "to_numpy") else x)
        if values.ndim != 1:
            raise ValueError(
                "x must be interactions (a DataFrame with user and item columns) or a 1-D list "
                f"of user ids. Received an array of shape {values.shape}."
            )
        return {"user": as_id_strings(values)}

    def _labels(self, columns, y):
        if isinstance(y, str):
            if y not in columns:
                raise ValueError(f"No column {y!r} in the interactions.")
            return columns[y]
        if y is not None:
            return y
        if self.target == "item":
            return columns["item"] if "item" in columns else None
        return columns["rating"] if "rating" in columns else None

    def _dataset(self, ds, class_names):
        import tensorflow as tf

        names = self.names

        def keep(x, *rest):
            x = {n: x[n] if x[n].dtype == tf.string else tf.strings.as_string(x[n]) for n in names}
            return (x, *rest)

        return Prepared(Batches(ds.map(keep)), class_names=class_names)

    def prepare(
        self, x, y=None, *, class_names=None, batch_size=32, shuffle=False, validation_split=None,
        sample_weight=None, seed=None, x_col=None, y_col=None, require_labels=True,
        unknown_ids="error", training=False, **options,
    ):
        """Checks and converts interactions; returns a `Prepared` of named id arrays."""
        masking = sorted({"exclude_seen", "seen"} & set(options))
        if masking:
            raise ValueError(
                f"{', '.join(masking)} apply to a RetrievalHead's evaluate(report=True), "
                f"evaluate_ranking and recommend, not to {type(self.head).__name__} here. "
                "Remove them, or use evaluate(test, report=True, exclude_seen=True)."
            )
        if options:
            raise ValueError(
                f"{', '.join(sorted(options))} do not apply to interactions (an Embeddings "
                "backbone)."
            )
        if unknown_ids not in ("error", "fallback"):
            raise ValueError(
                f'`unknown_ids` must be "error" or "fallback". Received: unknown_ids={unknown_ids!r}'
            )
        if self.target == "item":
            class_names = list(self.items)
        if is_dataset(x):
            no_split_for_datasets(validation_split)
            return self._dataset(x, class_names)
        columns = self._columns(x, x_col)
        missing = [n for n in self.names if n not in columns]
        if missing:
            raise ValueError(
                f"{type(self.head).__name__} scores (user, item) pairs, but the interactions have "
                "no item column. Pass a DataFrame with user and item columns."
            )
        inputs = {n: np.asarray(columns[n]).astype(str).astype(object) for n in self.names}
        n = len(inputs["user"])
        labels = self._labels(columns, y if y_col is None else y_col)
        check_lengths(n, labels, "interactions")
        if unknown_ids != "fallback":
            for name in self.names:
                check_known_ids(inputs[name], self.users if name == "user" else self.items, name)
        if labels is None and require_labels:
            needed = "an item" if self.target == "item" else "a rating (or label)"
            raise ValueError(
                f"No targets: {type(self.head).__name__} needs {needed} column in the "
                "interactions, or y=..."
            )
        weights = check_sample_weight(sample_weight, n)
        targets = None
        if labels is not None:
            targets, class_names = self.head.encode_targets(labels, class_names)
        # Only fit passes validation_split (evaluate and predict do not): keep what the
        # users interacted with, which recommend() excludes.
        if validation_split is not None and self.target == "item" and targets is not None:
            self.head.remember_seen(inputs["user"], targets)

        def make(index, training):
            return Batches({k: v[index] for k, v in inputs.items()}, take(targets, index),
                           take(weights, index))

        train, validation, index = build_splits(n, make, validation_split or 0.0, None, seed)
        return Prepared(train, validation, class_names, take(targets, index), num_examples=len(index),
                        context={"users": inputs["user"]})

