"""Training helpers of `FineTuner.fit` / `fine_tune`: argument checks, callbacks, history merging."""

import copy

import numpy as np

from finetunekit import freezing


def apply_adapter_unfreeze(adapter, unfreeze):
    """Applies `unfreeze` through the adapter when it has its own rule (LoRA), else by blocks."""
    if hasattr(adapter, "apply_unfreeze"):
        return adapter.apply_unfreeze(unfreeze)
    return freezing.apply_unfreeze(adapter.model, adapter.groups(), unfreeze)


class CacheOptions:
    """The feature-caching arguments of one `fit` call (see `finetunekit.caching`)."""

    def __init__(self, mode, memory_budget, augmented_copies, batch_size, shuffle):
        from finetunekit import caching

        if memory_budget is None:
            memory_budget = caching.DEFAULT_MEMORY_BUDGET
        caching.check_cache_options(mode, memory_budget, augmented_copies)
        self.mode, self.memory_budget = mode, memory_budget
        self.augmented_copies, self.batch_size, self.shuffle = augmented_copies, batch_size, shuffle

    def fit(self, model, inputs, targets, validation_data, epochs, kwargs):
        """Trains on cached features and returns the History, or None to train normally."""
        from finetunekit import caching

        if self.mode is False:
            return None
        blocker = caching.cache_blocker(
            model, inputs, targets, self.augmented_copies, kwargs.get("callbacks")
        )
        if blocker is not None:
            if self.mode is True:
                raise ValueError(f"Cannot cache features: {blocker}. Use cache_features=False.")
            return None
        return caching.fit_on_cached_features(
            model,
            inputs,
            targets,
            validation_data,
            batch_size=self.batch_size,
            epochs=epochs,
            shuffle=self.shuffle,
            memory_budget=self.memory_budget,
            augmented_copies=self.augmented_copies,
            fit_kwargs=kwargs,
        )


def add_reliability(model, kwargs, labels, on_nan, checkpoint_dir, has_validation):
    """Adds the divergence guard / checkpoint callbacks and resolves class_weight="balanced"."""
    from finetunekit.callbacks import training_callbacks

    if isinstance(kwargs.get("class_weight"), str):
        from finetunekit.data.pipeline import balanced_class_weight

        kwargs["class_weight"] = balanced_class_weight(labels, model.head, kwargs["class_weight"])
    kwargs["callbacks"] = training_callbacks(
        kwargs.get("callbacks"), on_nan, checkpoint_dir, has_validation
    )


def is_tf_dataset(value):
    from finetunekit.data.pipeline import is_dataset

    return is_dataset(value)


def data_args(inputs, targets, batch_size):
    """Positional/keyword data arguments for keras fit: datasets carry their own batches."""
    if targets is None:
        return (inputs,)
    return (inputs, targets, batch_size)


def check_batch_size(batch_size):
    if batch_size is None:
        return
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(
            f"`batch_size` must be a positive integer or None. Received: batch_size={batch_size!r}"
        )


def check_epochs(epochs, initial_epoch=0):
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ValueError(f"`epochs` must be a positive integer. Received: epochs={epochs!r}")
    if epochs <= initial_epoch:
        raise ValueError(
            f"`epochs` ({epochs}) must be greater than initial_epoch ({initial_epoch}): "
            "epochs is the index of the last epoch, not a count added to it."
        )


def merge_histories(histories):
    if not histories:
        return None
    merged = copy.copy(histories[-1])
    merged.history = {}
    merged.epoch = []
    for history in histories:
        merged.epoch += list(history.epoch)
        for key, values in history.history.items():
            merged.history.setdefault(key, []).extend(values)
    return merged
