"""Training-only text augmentation inside the text pipeline (`FineTuner(augment={...})`).

The pipeline keeps the *strings* of the training split in its cache, then,
after shuffling, every epoch: edits the words of each text, tokenises it and
masks some of its tokens. Targets and sample weights travel in the same
`tf.data` element as their text throughout, so no text changes partner.
The augmentation object is a `finetunekit.layers.TextAugmentation` (used here
through its `augment_text`, `mask_tokens` and `random_seeds` methods).
"""


def check_augmentable(pipeline, token_level):
    """Raises when this pipeline's augmentation cannot run (per-word targets, no mask token)."""
    augmentation = pipeline.augmentation
    if token_level:
        raise ValueError(
            "Text augmentation (random_deletion, random_swap, token_mask) supports heads with one "
            "target per text; a TokenClassificationHead has one tag per word, which edits would "
            "misalign. Remove augment= for this head."
        )
    if augmentation.token_mask and mask_token_id(pipeline) is None:
        tokenizer = pipeline.preprocessor.tokenizer
        raise ValueError(
            f"token_mask={augmentation.token_mask} needs the tokenizer's mask token, but "
            f"{type(tokenizer).__name__} has none. Use random_deletion / random_swap instead."
        )


def mask_token_id(pipeline):
    value = getattr(pipeline.preprocessor.tokenizer, "mask_token_id", None)
    return None if value is None else int(value)


def special_token_ids(pipeline):
    """Token ids never masked: the tokenizer's special tokens (start, end, padding, ...)."""
    tokenizer = pipeline.preprocessor.tokenizer
    ids = getattr(tokenizer, "special_token_ids", None)
    if ids is None:
        names = ("cls_token_id", "sep_token_id", "pad_token_id", "start_token_id", "end_token_id")
        ids = [getattr(tokenizer, name, None) for name in names]
    return sorted({int(i) for i in ids if i is not None})


def augmented_tokens(pipeline, ds):
    """Unbatched `(text, ...)` strings -> edited, tokenised, masked `(features, ...)` per epoch.

    Args:
        pipeline: a `TextPipeline` with an `augmentation`.
        ds: unbatched dataset of strings or of `(string, target[, weight])`.

    Returns:
        An unbatched dataset of token dicts (with the same targets and weights).
    """
    import tensorflow as tf

    augmentation = pipeline.augmentation
    if augmentation.edits_words:

        def edit(element, seed):
            if isinstance(element, tuple):
                return (augmentation.augment_text(element[0], seed), *element[1:])
            return augmentation.augment_text(element, seed)

        ds = tf.data.Dataset.zip((ds, augmentation.random_seeds())).map(
            edit, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
        )
    ds = pipeline.tokenized_dataset(ds)
    if augmentation.token_mask:
        mask_id, special = mask_token_id(pipeline), special_token_ids(pipeline)

        def mask(element, seed):
            features = element[0] if isinstance(element, tuple) else element
            features = dict(features)
            features["token_ids"] = augmentation.mask_tokens(
                features["token_ids"], features["padding_mask"], seed, mask_id, special
            )
            return (features, *element[1:]) if isinstance(element, tuple) else features

        ds = tf.data.Dataset.zip((ds, augmentation.random_seeds())).map(
            mask, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
        )
    return ds


def finish_augmented(pipeline, texts, extras, n, batch_size, padding, shuffle=False, seed=None):
    """`TextPipeline.finish` for augmented training text: cache strings, shuffle, augment, batch.

    Returns:
        `Batches` of a prefetched dataset of known cardinality.
    """
    import numpy as np
    import tensorflow as tf

    from finetunekit.core.data.text_cleaning import to_utf8_bytes

    ds = tf.data.Dataset.from_tensor_slices(np.asarray([to_utf8_bytes(t) for t in texts], object))
    return pipeline.finish(
        ds, extras, n, batch_size, padding, shuffle=shuffle, seed=seed,
        per_epoch=lambda shuffled: augmented_tokens(pipeline, shuffled),
    )
