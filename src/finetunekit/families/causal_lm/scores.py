"""Scores of instruction tuning: masked perplexity (a Keras metric), exact match and chrF."""

from collections import Counter

import keras
from keras import ops

CHRF_ORDER = 6
CHRF_BETA = 2.0


@keras.saving.register_keras_serializable(package="finetunekit")
class Perplexity(keras.metrics.Metric):
    """`exp` of the mean next-token cross-entropy over the weighted (trained) tokens.

    Padding and prompt tokens carry sample weight 0 and do not count.

    Args:
        name: str. Defaults to `"perplexity"`.
        **kwargs: Standard `keras.metrics.Metric` arguments.

    Example:
    ```python
    metric = Perplexity()
    metric.update_state(labels, logits, sample_weight=loss_mask)
    float(metric.result())
    ```
    """

    def __init__(self, name="perplexity", **kwargs):
        super().__init__(name=name, **kwargs)
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        loss = keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)
        weight = ops.ones_like(loss) if sample_weight is None else ops.cast(sample_weight, loss.dtype)
        weight = ops.broadcast_to(weight, ops.shape(loss))
        self.total.assign_add(ops.cast(ops.sum(loss * weight), self.total.dtype))
        self.count.assign_add(ops.cast(ops.sum(weight), self.count.dtype))

    def result(self):
        return ops.exp(ops.divide_no_nan(self.total, self.count))

    def reset_state(self):
        self.total.assign(0.0)
        self.count.assign(0.0)


def _ngrams(text, n):
    return Counter(text[i : i + n] for i in range(len(text) - n + 1))


def chrf(predictions, references, order=CHRF_ORDER, beta=CHRF_BETA):
    """Corpus chrF (0-100): the character n-gram F-score of Popović (2015).

    Spaces are removed; matched, predicted and reference n-gram counts of
    each order 1..`order` are summed over the corpus; precision and recall
    are averaged over the orders and combined with recall weighted `beta`
    times as much as precision.

    Args:
        predictions: list of str.
        references: list of str, one per prediction.
        order: int. Longest character n-gram. Defaults to 6.
        beta: float. Recall weight. Defaults to 2.

    Returns:
        float in [0, 100].

    Example:
    ```python
    chrf(["the cat"], ["the cat"])  # 100.0
    ```
    """
    matched = [0] * order
    predicted = [0] * order
    expected = [0] * order
    for prediction, reference in zip(predictions, references, strict=True):
        hyp, ref = "".join(str(prediction).split()), "".join(str(reference).split())
        for n in range(1, order + 1):
            hyp_grams, ref_grams = _ngrams(hyp, n), _ngrams(ref, n)
            matched[n - 1] += sum((hyp_grams & ref_grams).values())
            predicted[n - 1] += sum(hyp_grams.values())
            expected[n - 1] += sum(ref_grams.values())
    orders = [n for n in range(order) if predicted[n] or expected[n]]
    if not orders:
        return 0.0
    precision = sum(matched[n] / predicted[n] if predicted[n] else 0.0 for n in orders) / len(orders)
    recall = sum(matched[n] / expected[n] if expected[n] else 0.0 for n in orders) / len(orders)
    if precision + recall == 0:
        return 0.0
    score = (1 + beta**2) * precision * recall / (beta**2 * precision + recall)
    return 100.0 * score


def exact_match(predictions, references):
    """Fraction of predictions equal to their reference (surrounding whitespace ignored)."""
    pairs = list(zip(predictions, references, strict=True))
    if not pairs:
        return 0.0
    return sum(str(p).strip() == str(r).strip() for p, r in pairs) / len(pairs)
