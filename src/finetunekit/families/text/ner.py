"""Token classification (NER) head: one tag per word, entity spans, entity-level scores."""

import keras
import numpy as np

from finetunekit.core.data.constants import IGNORE_INDEX
from finetunekit.core.data.text_readers import as_words
from finetunekit.core.pooled import PooledHead
from finetunekit.core.reports import Report


@keras.saving.register_keras_serializable(package="finetunekit")
class TokenClassificationHead(PooledHead):
    """Per-token softmax over tags, for named-entity recognition and tagging.

    Training data are lists of words with one tag per word (or a CoNLL file,
    see `fk.data.read_conll`). Words are split into sub-words by the backbone's
    tokenizer; the first sub-word of a word carries its tag and the others are
    ignored by the loss (label `-100`), as are `[CLS]`, `[SEP]` and padding.
    `FineTuner.predict_labels` returns one tag per word; the head adds
    `FineTuner.predict_entities` (entity spans) and
    `FineTuner.evaluate_entities` (entity-level scores).

    Args:
        num_tags: int. Number of tags (e.g. `O`, `B-PER`, `I-PER`, ...).
        hidden_units: tuple of ints. Hidden dense layers. Defaults to `()`.
        dropout: float. Dropout before each dense layer. Defaults to `0.0`.
        activation: str. Activation of the hidden layers. Defaults to `"relu"`.
        kernel_regularizer: a Keras regularizer on the kernels of the head's
            dense layers, or `l1=` / `l2=` floats as a shortcut. Saved with the
            model. Defaults to none.
        **kwargs: Standard `keras.layers.Layer` arguments.

    Returns:
        Probabilities of shape `(batch, sequence, num_tags)`, float32.

    Example:
    ```python
    ft = fk.FineTuner(backbone=bert, preprocessor=preprocessor,
                      head=fk.TokenClassificationHead(num_tags=5), unfreeze="all")
    ft.fit([["John", "lives", "in", "Paris"]], [["B-PER", "O", "O", "B-LOC"]])
    ft.predict_labels([["Mary", "left", "Rome"]])   # [["B-PER", "O", "B-LOC"]]
    ft.predict_entities([["Mary", "left", "Rome"]])
    ```
    """

    needs = ("features",)
    target_layout = "token"
    task_methods = ("predict_entities", "evaluate_entities")

    def __init__(self, num_tags, hidden_units=(), dropout=0.0, activation="relu", **kwargs):
        if "pooling" in kwargs:
            raise ValueError(
                "TokenClassificationHead predicts one tag per token and does not pool; "
                f"remove pooling=. Received: pooling={kwargs['pooling']!r}"
            )
        if isinstance(num_tags, bool) or int(num_tags) != num_tags or int(num_tags) < 2:
            raise ValueError(f"`num_tags` must be an int >= 2. Received: num_tags={num_tags!r}")
        self.num_tags = int(num_tags)
        super().__init__(
            units=self.num_tags, output_activation="softmax", pooling="none",
            hidden_units=hidden_units, dropout=dropout, activation=activation, **kwargs,
        )

    def adapt_backbone(self, kind):
        """Refuses a backbone without words: tags go to the sub-words of a text tokenizer."""
        if kind.modality != "text":
            raise ValueError(
                f"TokenClassificationHead tags the words of texts; a {kind.modality} backbone "
                f"({kind.name}) has no words to tag. Use a text encoder (e.g. "
                'backbone="bert_base_en_uncased"), or ClassificationHead for one label per input.'
            )
        return kind

    def compute_output_shape(self, input_shape):
        shape = input_shape["features"] if isinstance(input_shape, dict) else input_shape
        return (shape[0], shape[1], self.units)

    def default_loss(self, label_smoothing=0.0):
        if label_smoothing:
            raise ValueError("`label_smoothing` is not supported by TokenClassificationHead.")
        return keras.losses.SparseCategoricalCrossentropy(ignore_class=IGNORE_INDEX)

    def encode_targets(self, y, class_names=None):
        """Encodes per-word tags as integer ids.

        Args:
            y: list of tag lists (strings or ids), one tag per word.
            class_names: list of str or None. Known tag names.

        Returns:
            `(encoded, class_names)`: a list of int32 arrays and the tag names.
        """
        y = [[t.decode() if isinstance(t, bytes) else t for t in tags] for tags in y]
        flat = [t for tags in y for t in tags]
        if flat and isinstance(flat[0], str):
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
            return [np.asarray([index[t] for t in tags], "int32") for tags in y], list(class_names)
        if flat and (min(flat) < 0 or max(flat) >= self.num_tags):
            raise ValueError(
                f"Tag ids must be in 0..{self.num_tags - 1}. Received {min(flat)}..{max(flat)}."
            )
        return [np.asarray(tags, dtype="int32") for tags in y], class_names

    def decode(self, outputs, class_names=None, context=None):
        """One tag per word: the tag of each word's first sub-word.

        Args:
            outputs: `(n, tokens, num_tags)` probabilities.
            class_names: tag names, or None for ids.
            context: per text, the token index where each word starts (None
                for words cut by truncation, which get the first tag, `"O"`
                for BIO tags), as the text pipeline finds it.

        Returns:
            A list of tag lists.
        """
        names = class_names or list(range(self.num_tags))
        if context is None:
            return [[names[i] for i in np.argmax(np.asarray(o), axis=-1)] for o in outputs]
        result = []
        for row, word_starts in zip(outputs, context, strict=True):
            ids = np.argmax(row, axis=-1)
            result.append([names[ids[p]] if p is not None else names[0] for p in word_starts])
        return result

    def report(self, outputs, targets, class_names=None):
        """Entity-level precision/recall/F1 (seqeval) over the labelled words."""
        names = class_names or [str(i) for i in range(self.num_tags)]
        true, predicted = [], []
        for row, target in zip(np.asarray(outputs), np.asarray(targets), strict=True):
            keep = target != IGNORE_INDEX
            true.append([names[i] for i in target[keep]])
            predicted.append([names[i] for i in np.argmax(row[keep], axis=-1)])
        return entity_report(true, predicted)

    def predict_entities(self, tuner, x, batch_size=None, **kwargs):
        """Entity spans of each text: `ft.predict_entities(x)`.

        Args:
            tuner: the FineTuner.
            x: list of word lists (or of strings, split on whitespace).

        Returns:
            Per text, a list of `{"type", "start", "end", "text"}` (word indices).
        """
        if isinstance(x, (str, bytes)):
            raise ValueError(
                "predict_entities takes a list of texts (word lists or strings); received one "
                "string. Wrap it in a list: predict_entities([text])."
            )
        tags = tuner.predict_labels(x, batch_size=batch_size, **kwargs)
        return [entity_spans(as_words(s), t) for s, t in zip(x, tags, strict=True)]

    def evaluate_entities(self, tuner, x, y, batch_size=None, **kwargs):
        """Entity-level precision/recall/F1 (seqeval): `ft.evaluate_entities(x, y)`."""
        return entity_scores(y, tuner.predict_labels(x, batch_size=batch_size, **kwargs))

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


def entity_report(true_tags, predicted_tags):
    """A `Report` of entity-level scores (seqeval): overall micro P/R/F1 and per entity type."""
    from seqeval.metrics import classification_report

    scores = entity_scores(true_tags, predicted_tags)
    table = classification_report(true_tags, predicted_tags, output_dict=True, zero_division=0)
    per_type = {
        name: {
            "precision": float(v["precision"]), "recall": float(v["recall"]),
            "f1": float(v["f1-score"]), "support": int(v["support"]),
        }
        for name, v in table.items()
        if not name.endswith("avg")
    }
    return Report("entities", scores, per_type, None, list(per_type), len(true_tags))
