"""Token classification (NER) head: one tag per word, entity spans, entity-level scores."""

import keras
import numpy as np

from finetunekit.heads.base import Head

IGNORE_INDEX = -100


@keras.saving.register_keras_serializable(package="finetunekit")
class TokenClassificationHead(Head):
    """Per-token softmax over tags, for named-entity recognition and tagging.

    Training data are lists of words with one tag per word (or a CoNLL file,
    see `read_conll`). Words are split into sub-words by the backbone's
    tokenizer; the first sub-word of a word carries its tag and the others are
    ignored by the loss (label `-100`), as are `[CLS]`, `[SEP]` and padding.
    `FineTuner.predict_labels` returns one tag per word and
    `FineTuner.predict_entities` the entity spans.

    Args:
        num_tags: int. Number of tags (e.g. `O`, `B-PER`, `I-PER`, ...).
        hidden_units: tuple of ints. Hidden dense layers. Defaults to `()`.
        dropout: float. Dropout before each dense layer. Defaults to `0.0`.
        activation: str. Activation of the hidden layers. Defaults to `"relu"`.
        **kwargs: Standard `keras.layers.Layer` arguments.

    Returns:
        Probabilities of shape `(batch, sequence, num_tags)`, float32.

    Example:
    ```python
    ft = fk.FineTuner(backbone=bert, preprocessor=preprocessor,
                      head=fk.TokenClassificationHead(num_tags=5), unfreeze="all")
    ft.fit([["John", "lives", "in", "Paris"]], [["B-PER", "O", "O", "B-LOC"]])
    ft.predict_labels([["Mary", "left", "Rome"]])   # [["B-PER", "O", "B-LOC"]]
    ```
    """

    token_level = True

    def __init__(self, num_tags, hidden_units=(), dropout=0.0, activation="relu", **kwargs):
        num_tags = int(num_tags)
        if num_tags < 2:
            raise ValueError(f"`num_tags` must be >= 2. Received: num_tags={num_tags}")
        kwargs.pop("pooling", None)
        self.num_tags = num_tags
        super().__init__(
            units=num_tags,
            output_activation="softmax",
            pooling="none",
            hidden_units=hidden_units,
            dropout=dropout,
            activation=activation,
            **kwargs,
        )

    def compute_output_shape(self, features_shape, padding_mask_shape=None):
        return (features_shape[0], features_shape[1], self.units)

    def default_loss(self):
        return keras.losses.SparseCategoricalCrossentropy(ignore_class=IGNORE_INDEX)

    def default_metrics(self):
        return []

    def prepare_targets(self, y, class_names=None):
        """Encodes per-word tags as integer ids.

        Args:
            y: list of tag lists (strings or ids), one tag per word.
            class_names: list of str or None. Known tag names.

        Returns:
            `(encoded, class_names)`: a list of int32 arrays and the tag names.
        """
        y = [list(tags) for tags in y]
        flat = [t for tags in y for t in tags]
        if flat and isinstance(flat[0], (str, bytes)):
            flat = [t.decode() if isinstance(t, bytes) else t for t in flat]
            if class_names is None:
                class_names = sorted(set(flat), key=lambda t: (t != "O", t))
            index = {name: i for i, name in enumerate(class_names)}
            unknown = sorted(set(flat) - set(index))
            if unknown:
                raise ValueError(f"Tags {unknown[:6]} are not among {class_names}.")
            if len(class_names) > self.num_tags:
                raise ValueError(
                    f"The data has {len(class_names)} tags ({class_names}) but the head has "
                    f"num_tags={self.num_tags}. Set num_tags={len(class_names)}."
                )
            encoded = [
                np.asarray([index[t.decode() if isinstance(t, bytes) else t] for t in tags], "int32")
                for tags in y
            ]
            return encoded, list(class_names)
        encoded = [np.asarray(tags, dtype="int32") for tags in y]
        if flat and (min(flat) < 0 or max(flat) >= self.num_tags):
            raise ValueError(
                f"Tag ids must be in 0..{self.num_tags - 1}. Received {min(flat)}..{max(flat)}."
            )
        return encoded, class_names

    def decode(self, outputs, class_names=None):
        """Turns `(words, num_tags)` probabilities of each text into tag names (or ids)."""
        names = class_names or list(range(self.num_tags))
        return [[names[i] for i in np.argmax(np.asarray(o), axis=-1)] for o in outputs]

    def get_config(self):
        config = super().get_config()
        config.pop("pooling", None)
        config["num_tags"] = self.num_tags
        return config


def entity_spans(words, tags):
    """Entity spans of a BIO/IOB2-tagged sentence.

    Args:
        words: list of str.
        tags: list of str, one per word (`"B-PER"`, `"I-PER"`, `"O"`, ...).

    Returns:
        A list of dicts `{"type", "start", "end", "text"}` with word indices
        (`end` exclusive).
    """
    from seqeval.metrics.sequence_labeling import get_entities

    return [
        {"type": kind, "start": start, "end": end + 1, "text": " ".join(words[start : end + 1])}
        for kind, start, end in get_entities([str(t) for t in tags])
    ]


def entity_scores(true_tags, predicted_tags):
    """Entity-level precision, recall and F1 (seqeval, CoNLL rules).

    Args:
        true_tags: list of tag lists.
        predicted_tags: list of tag lists of the same lengths.

    Returns:
        dict with `precision`, `recall`, `f1` (micro-averaged over entities).
    """
    from seqeval.metrics import f1_score, precision_score, recall_score

    true_tags = [[str(t) for t in tags] for tags in true_tags]
    predicted_tags = [[str(t) for t in tags] for tags in predicted_tags]
    return {
        "precision": float(precision_score(true_tags, predicted_tags)),
        "recall": float(recall_score(true_tags, predicted_tags)),
        "f1": float(f1_score(true_tags, predicted_tags)),
    }


def read_conll(path, word_column=0, tag_column=-1):
    """Reads a CoNLL-style file: one `word ... tag` line per token, blank lines between sentences.

    Returns:
        `(sentences, tags)`: lists of word lists and tag lists.
    """
    sentences, tags, words, labels = [], [], [], []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            line = line.strip()
            if not line or line.startswith("-DOCSTART-"):
                if words:
                    sentences.append(words)
                    tags.append(labels)
                words, labels = [], []
                continue
            parts = line.split()
            words.append(parts[word_column])
            labels.append(parts[tag_column])
    if words:
        sentences.append(words)
        tags.append(labels)
    return sentences, tags
