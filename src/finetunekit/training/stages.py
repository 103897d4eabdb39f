"""One training stage, shared by `fit`, both stages of `fine_tune` and the cached path.

A stage takes prepared data (see `finetunekit.core.data.pipeline.Prepared`), adds
the reliability callbacks, resolves `class_weight` through the head, and trains
either the head alone on cached backbone features or the whole model with
`keras.Model.fit`.
"""

import copy
import dataclasses
import logging

import keras
import numpy as np

from finetunekit.core.console import progress_verbosity

#: `fit` options handed to the data pipeline (when given).
DATA_OPTIONS = ("on_bad_image", "x_col", "y_col", "padding", "sample_rate",
                "pad_to_seconds", "exclude_seen", "seen")


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


def check_early_stopping(patience):
    if patience is None:
        return
    if isinstance(patience, bool) or not isinstance(patience, (int, np.integer)) or patience < 1:
        raise ValueError(
            "`early_stopping` is the patience in epochs (a positive int, e.g. "
            f"early_stopping=3) or None. Received: early_stopping={patience!r}"
        )


def early_stopping_callback(patience, has_validation):
    """Keras' `EarlyStopping` on `val_loss` with the best weights restored (`fit(early_stopping=N)`)."""
    if not has_validation:
        raise ValueError(
            f"early_stopping={patience} watches the validation loss, but this fit has no "
            "validation data. Pass validation_split=0.1 or validation_data=(x_val, y_val)."
        )
    return keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=int(patience), restore_best_weights=True
    )


def pop_data_options(kwargs):
    """Removes and returns the data-pipeline options of `kwargs`."""
    return {key: kwargs.pop(key) for key in DATA_OPTIONS if key in kwargs}


@dataclasses.dataclass
class StageOptions:
    """finetunekit's own `fit` options for one stage (the rest go to `keras.Model.fit`).

    Attributes:
        batch_size, shuffle: as for `fit`.
        on_nan: `"raise"`, `"warn"` or None.
        checkpoint_dir: str or None.
        cache_features: `"auto"`, True or False.
        cache_memory_budget: int or None (bytes).
        cache_augmented_copies: int.
        early_stopping: int or None. Patience (epochs) of an
            `EarlyStopping(monitor="val_loss", restore_best_weights=True)`.
    """

    batch_size: int = None
    shuffle: bool = True
    on_nan: str = "raise"
    checkpoint_dir: str = None
    cache_features: object = "auto"
    cache_memory_budget: int = None
    cache_augmented_copies: int = 0
    early_stopping: int = None

    def __post_init__(self):
        check_early_stopping(self.early_stopping)
        from finetunekit.training import caching

        if self.cache_memory_budget is None:
            self.cache_memory_budget = caching.DEFAULT_MEMORY_BUDGET
        caching.check_cache_options(
            self.cache_features, self.cache_memory_budget, self.cache_augmented_copies
        )
        if self.checkpoint_dir is not None and self.cache_features == "auto":
            self.cache_features = False  # a checkpoint holds the whole FineTuner, not a cached head


def run_stage(model, prepared, validation, epochs, options, fit_kwargs, initial_epoch=0):
    """Trains `model` for one stage; returns the `keras.callbacks.History`.

    Args:
        model: a compiled FineTuner.
        prepared: a `Prepared` (training data, encoded targets).
        validation: `fit(validation_data=...)` value (already prepared) or None.
        epochs: int. Index of the last epoch.
        options: a `StageOptions`.
        fit_kwargs: dict. Other `keras.Model.fit` arguments (`callbacks`,
            `class_weight`, `verbose`, ...); not modified.
        initial_epoch: int. First epoch of the stage.
    """
    from finetunekit.training.callbacks import training_callbacks

    check_epochs(epochs, fit_kwargs.get("initial_epoch", initial_epoch))
    kwargs = dict(fit_kwargs)
    kwargs.setdefault("initial_epoch", initial_epoch)
    kwargs["verbose"] = progress_verbosity(kwargs.get("verbose", "auto"))
    if kwargs.get("class_weight") is not None:
        _check_one_weighting(prepared.train)
        kwargs["class_weight"] = model.head.class_weight(
            prepared.train_targets, kwargs["class_weight"], model.class_names
        )
    kwargs["callbacks"] = training_callbacks(
        kwargs.get("callbacks"), options.on_nan, options.checkpoint_dir, validation is not None
    )
    if options.early_stopping is not None:
        kwargs["callbacks"].append(
            early_stopping_callback(options.early_stopping, validation is not None)
        )
    build_optimizer_slots(model)
    history = _cached_fit(model, prepared, validation, epochs, options, kwargs)
    if history is not None:
        return history
    train = prepared.train
    return keras.Model.fit(
        model,
        **train.fit_arguments(options.batch_size),
        epochs=epochs,
        validation_data=validation,
        shuffle=options.shuffle and not train.is_dataset,  # datasets shuffle themselves
        **kwargs,
    )


def _check_one_weighting(train):
    """Refuses `class_weight` with per-example weights, which Keras cannot combine."""
    spec = train.x.element_spec if train.is_dataset else None
    weighted = train.sample_weight is not None or (isinstance(spec, tuple) and len(spec) == 3)
    if weighted:
        raise ValueError(
            "fit() received both per-example weights (sample_weight, or a dataset of "
            "(x, y, sample_weight)) and class_weight; Keras cannot use both. Multiply "
            "the class weights into the example weights, e.g. sample_weight * "
            "np.array([w_0, w_1, ...])[labels], and drop class_weight, or drop sample_weight."
        )


def build_optimizer_slots(model):
    """Creates the optimizer's variables for the trainable weights before the first step.

    Without a distribution strategy, Keras' TensorFlow trainer creates them
    while tracing the first train step, and TensorFlow then traces the whole
    step a second time (it cannot create variables in a traced function).
    Creating them first saves that trace: about 3 s of a MiniLM fine-tune's
    first step on CPU. A callback that changes which weights train
    (`GradualUnfreezing`) rebuilds the optimizer as before.
    """
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or optimizer.built:
        return
    with model.distribute_strategy.scope():
        optimizer.build(model.trainable_variables)


def _cached_fit(model, prepared, validation, epochs, options, kwargs):
    """Trains the head on cached features and returns the History, or None to train normally."""
    from finetunekit.training import caching

    if options.cache_features is False:
        return None
    train = prepared.train
    blocker = caching.cache_blocker(
        model, train, options.cache_augmented_copies, kwargs.get("callbacks")
    )
    if blocker is not None:
        if options.cache_features is True:
            raise ValueError(f"Cannot cache features: {blocker}. Use cache_features=False.")
        logging.getLogger("finetunekit").info("Training without the feature cache: %s.", blocker)
        return None
    return caching.fit_on_cached_features(
        model, train, validation, batch_size=options.batch_size, epochs=epochs,
        shuffle=options.shuffle, memory_budget=options.cache_memory_budget,
        augmented_copies=options.cache_augmented_copies, fit_kwargs=kwargs,
    )


def merge_histories(histories):
    """One `History` covering several stages (epochs and logs concatenated)."""
    histories = [h for h in histories if h is not None]
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
