"""Training-only text augmentation: word deletion, word swap and token masking.

`FineTuner(augment={"random_deletion": 0.1, "random_swap": 0.1, "token_mask": 0.15})`
on a text backbone builds one `TextAugmentation`. It is not a layer of the
model graph: the text pipeline applies it in `tf.data` to the *training*
split only, after the texts are cached and shuffled, so every epoch sees new
random edits while each text stays in the same element as its label (and
sample weight). Evaluation, validation and prediction never see it. Random
numbers come from `tf.data.Dataset.random` and stateless ops: with a `seed`
the edits are reproducible, and they differ from epoch to epoch.
"""

import keras
import numpy as np

#: Keyword -> short description, listed in the error for an unknown keyword.
TEXT_AUGMENT_KEYWORDS = {
    "random_deletion": "probability that each word is deleted (one word always stays), e.g. 0.1",
    "random_swap": "probability that each word swaps places with a random word, e.g. 0.1",
    "token_mask": "probability that each sub-word token becomes the tokenizer's mask token, e.g. 0.15",
    "seed": "int",
}
RATES = ("random_deletion", "random_swap", "token_mask")


def is_text_augment(augment):
    """True for an `augment` dict that names a text augmentation keyword."""
    return isinstance(augment, dict) and any(key in RATES for key in augment)


@keras.saving.register_keras_serializable(package="finetunekit")
class TextAugmentation(keras.layers.Layer):
    """Random word deletion, word swap and token masking for training text.

    The text pipeline calls `augment_text` on each training string and
    `mask_tokens` on its tokens; as a layer it passes its input through
    unchanged (it is kept with the model only so that a saved FineTuner
    trains with the same augmentation after loading).

    Args:
        random_deletion: float in [0, 1). Probability that each word is
            deleted; one word always stays. Defaults to `0.0`.
        random_swap: float in [0, 1). Probability that each word swaps places
            with a word at a random position. Defaults to `0.0`.
        token_mask: float in [0, 1). Probability that each sub-word token
            (not `[CLS]`, `[SEP]`, padding) becomes the tokenizer's mask token.
            Defaults to `0.0`.
        seed: int or None. Seed of the random edits.
        **kwargs: Standard `keras.layers.Layer` arguments.

    Returns:
        Its input, unchanged (the edits happen in the input pipeline).

    Example:
    ```python
    ft = fk.FineTuner(backbone="bert_tiny_en_uncased", head=fk.ClassificationHead(2),
                      augment={"random_deletion": 0.1, "token_mask": 0.15, "seed": 1})
    ```
    """

    modality = "text"

    def __init__(self, random_deletion=0.0, random_swap=0.0, token_mask=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        rates = dict(random_deletion=random_deletion, random_swap=random_swap, token_mask=token_mask)
        for key, value in rates.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise ValueError(
                    f"`{key}` must be a probability in [0, 1) ({TEXT_AUGMENT_KEYWORDS[key]}). "
                    f"Received: {key}={value!r}"
                )
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise ValueError(f"`seed` must be a whole number or None. Received: seed={seed!r}")
        self.random_deletion = float(random_deletion)
        self.random_swap = float(random_swap)
        self.token_mask = float(token_mask)
        self.seed = None if seed is None else int(seed)

    def call(self, inputs):
        return inputs

    @property
    def edits_words(self):
        return bool(self.random_deletion or self.random_swap)

    def random_seeds(self):
        """A dataset of int64 seeds, new values every epoch (reproducible with `seed`)."""
        import tensorflow as tf

        return tf.data.Dataset.random(seed=self.seed, rerandomize_each_iteration=True)

    def augment_text(self, text, seed):
        """Deletes and swaps words of one string (a scalar string tensor).

        Args:
            text: scalar string tensor.
            seed: int64 scalar tensor.

        Returns:
            The edited string, words joined by single spaces.
        """
        import tensorflow as tf

        seeds = tf.random.experimental.stateless_split(tf.stack([seed, 0]), 3)
        words = tf.strings.split(text)
        n = tf.size(words)
        if self.random_deletion:
            draw = tf.random.stateless_uniform([n], seeds[0])
            keep = draw >= self.random_deletion
            # One word always stays: the one with the highest draw.
            keep = keep | (tf.range(n) == tf.cast(tf.argmax(draw), tf.int32))
            words = tf.boolean_mask(words, keep)
            n = tf.size(words)
        if self.random_swap:
            words = _swap_words(words, n, self.random_swap, seeds[1], seeds[2])
        return tf.strings.reduce_join(words, separator=" ")

    def mask_tokens(self, token_ids, padding_mask, seed, mask_token_id, special_ids):
        """Replaces random real tokens of one example by `mask_token_id`.

        Args:
            token_ids: 1-D int tensor.
            padding_mask: 1-D bool/int tensor, true for real tokens.
            seed: int64 scalar tensor.
            mask_token_id: int.
            special_ids: list of int. Tokens never masked (`[CLS]`, `[SEP]`, ...).

        Returns:
            The token ids with some replaced.
        """
        import tensorflow as tf

        seed = tf.random.experimental.stateless_split(tf.stack([seed, 1]), 1)[0]
        draw = tf.random.stateless_uniform(tf.shape(token_ids), seed)
        chosen = (draw < self.token_mask) & tf.cast(padding_mask, tf.bool)
        for special in special_ids:
            chosen &= tf.not_equal(token_ids, tf.cast(special, token_ids.dtype))
        return tf.where(chosen, tf.cast(mask_token_id, token_ids.dtype), token_ids)

    def get_config(self):
        return {
            **super().get_config(),
            "random_deletion": self.random_deletion,
            "random_swap": self.random_swap,
            "token_mask": self.token_mask,
            "seed": self.seed,
        }


def _swap_words(words, n, rate, choose_seed, partner_seed):
    """Each position, in order, swaps with a random position with probability `rate`."""
    import tensorflow as tf

    swap = tf.random.stateless_uniform([n], choose_seed) < rate
    partners = tf.random.stateless_uniform(
        [n], partner_seed, minval=0, maxval=tf.maximum(n, 1), dtype=tf.int32
    )

    def body(i, order):
        j = partners[i]
        a, b = order[i], order[j]
        updated = tf.tensor_scatter_nd_update(order, [[i], [j]], tf.stack([b, a]))
        return i + 1, tf.where(swap[i], updated, order)

    _, order = tf.while_loop(lambda i, _: i < n, body, (tf.constant(0), tf.range(n)))
    return tf.gather(words, order)


def build_text_augmentation(augment):
    """A `TextAugmentation` from an `augment` keyword dict (unknown keywords listed).

    Args:
        augment: dict of `TEXT_AUGMENT_KEYWORDS`.

    Returns:
        A list holding one `TextAugmentation`.

    Example:
    ```python
    build_text_augmentation({"random_swap": 0.1})
    ```
    """
    unknown = sorted(set(augment) - set(TEXT_AUGMENT_KEYWORDS))
    if unknown:
        known = "\n".join(f"  {k}: {v}" for k, v in TEXT_AUGMENT_KEYWORDS.items())
        raise ValueError(
            f"Unknown text augmentation keyword(s): {', '.join(unknown)}. Text backbones know:"
            f"\n{known}\n(image keywords such as rotation_range apply to image backbones only)"
        )
    return [TextAugmentation(**augment)]
