"""How `fit` and `fine_tune` read their arguments, and `fine_tune`'s two stages."""

import dataclasses
import os

import numpy as np

from finetunekit.training.optimizer import check_learning_rate
from finetunekit.training.stages import StageOptions, check_epochs, pop_data_options, run_stage

#: `fine_tune` stage folders inside `checkpoint_dir`, and the weights that mark stage one done.
HEAD_STAGE_DIR, UNFROZEN_STAGE_DIR = "head_only", "unfrozen"
HEAD_STAGE_WEIGHTS = "head_only.weights.h5"


@dataclasses.dataclass
class FitPlan:
    """One `fit` call's arguments, sorted by who uses them.

    Attributes:
        options: `StageOptions` (finetunekit's training options).
        data: dict. Options of the data pipeline (`on_bad_image`, `x_col`,
            `y_col`, `padding`).
        sample_weight: per-example weights or None.
        seed: int or None. Seed of the validation split and shuffling.
        keras: dict. Everything else, for `keras.Model.fit`.
    """

    options: StageOptions
    data: dict
    sample_weight: object
    seed: object
    keras: dict


def plan_fit(
    batch_size=None, shuffle=True, sample_weight=None, seed=None, checkpoint_dir=None,
    on_nan="raise", cache_features="auto", cache_memory_budget=None, cache_augmented_copies=0,
    early_stopping=None, **kwargs,
):
    """Sorts `fit` keyword arguments into a `FitPlan` (see `FineTuner.fit` for their meaning)."""
    data = pop_data_options(kwargs)
    options = StageOptions(
        batch_size, shuffle, on_nan, checkpoint_dir, cache_features, cache_memory_budget,
        cache_augmented_copies, early_stopping,
    )
    return FitPlan(options, data, sample_weight, seed, kwargs)


@dataclasses.dataclass
class Stage:
    """One stage of `fine_tune`: which blocks train, at what rate, for which epochs."""

    unfreeze: object
    learning_rate: float
    start: int
    end: int
    checkpoint_dir: str = None
    callbacks: tuple = ()


def fine_tune_stages(
    epochs, freeze_epochs, unfreeze, learning_rate, fine_tune_learning_rate, gradual, every,
    checkpoint_dir=None,
):
    """The stages of `fine_tune`: head only, then the top `unfreeze` blocks (gradually or at once).

    Returns:
        A list of `Stage` (empty stages left out).
    """
    check_epochs(epochs)
    check_learning_rate(learning_rate)
    check_learning_rate(fine_tune_learning_rate, "fine_tune_learning_rate")
    if isinstance(freeze_epochs, bool) or not 0 <= int(freeze_epochs) <= epochs:
        raise ValueError(
            f"`freeze_epochs` must be between 0 and epochs={epochs}. "
            f"Received: freeze_epochs={freeze_epochs}"
        )
    folder = (lambda name: None) if checkpoint_dir is None else (
        lambda name: os.path.join(os.fspath(checkpoint_dir), name)
    )
    stages = []
    if freeze_epochs:
        stages.append(Stage(0, learning_rate, 0, freeze_epochs, folder(HEAD_STAGE_DIR)))
    if epochs > freeze_epochs:
        rate = fine_tune_learning_rate or learning_rate / 10
        first, extra = unfreeze, ()
        if gradual and isinstance(unfreeze, dict):
            raise ValueError(
                f"gradual=True opens one stack of blocks at a time; unfreeze={unfreeze!r} opens "
                "encoder and decoder apart. Pass gradual=False, or an int / \"all\"."
            )
        if gradual:
            from finetunekit.training.schedules import GradualUnfreezing

            first = 1 if unfreeze == "all" else min(1, unfreeze)
            extra = (
                GradualUnfreezing(
                    every, max_blocks=None if unfreeze == "all" else unfreeze,
                    start_epoch=freeze_epochs, initial_blocks=1,
                ),
            )
        stages.append(
            Stage(first, rate, freeze_epochs, epochs, folder(UNFROZEN_STAGE_DIR), extra)
        )
    return stages


def describe(stage, blocks):
    """One line saying what a `fine_tune` stage trains."""
    what = "the head only" if not blocks else f"the head and blocks {', '.join(blocks)}"
    return (
        f"fine_tune: epochs {stage.start + 1}-{stage.end} train {what} at learning rate "
        f"{stage.learning_rate:g}"
    )


def training_data(model, x, y, validation_data, validation_split, plan):
    """Prepares training and validation data for `fit`/`fine_tune`; keeps learned class names.

    Returns:
        `(prepared, validation)`: a `Prepared` and the `validation_data` for Keras.
    """
    options = plan.options
    prepared = model.prepare(
        x, y, options.batch_size, shuffle=options.shuffle, validation_split=validation_split,
        sample_weight=plan.sample_weight, seed=plan.seed, training=True, **plan.data,
    )
    if prepared.class_names is not None:
        model.class_names = list(prepared.class_names)
    if prepared.validation is not None:
        if validation_data is not None:
            raise ValueError("Pass either validation_data or validation_split, not both.")
        return prepared, prepared.validation.as_validation()
    if validation_data is None:
        return prepared, None
    vx, vy, vw = validation_data, None, None
    if isinstance(validation_data, tuple) and len(validation_data) in (2, 3):
        vx, vy, vw = (*validation_data, None)[:3]
    _check_same_label_kind(y, vy)
    validation = model.prepare(
        vx, vy, options.batch_size, shuffle=False, sample_weight=vw, **plan.data
    )
    return prepared, validation.train.as_validation()


def _label_kind(labels):
    """`"names"` or `"ids"` for a flat list/array of class labels, else None (other targets)."""
    if labels is None or isinstance(labels, (str, dict)) or not hasattr(labels, "__len__"):
        return None
    array = np.asarray(labels, dtype=object)
    if array.ndim != 1 or not len(array):
        return None
    values = array[:1000]
    if all(isinstance(v, (str, bytes)) for v in values):
        return "names"
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        return "ids"
    return None


def _check_same_label_kind(y, validation_y):
    """Refuses class names for training with class ids for validation (or the reverse)."""
    train, validation = _label_kind(y), _label_kind(validation_y)
    if train and validation and train != validation:
        raise ValueError(
            f"The training labels are class {train} but the validation labels are class "
            f"{validation}; they would be matched by position, not by meaning. Give both as "
            "class names (e.g. 'cat'), or both as class ids (0, 1, ...)."
        )


def run_fine_tune_stage(model, stage, prepared, validation, plan, compile_args):
    """Runs one `fine_tune` stage; a head stage finished before a crash is not repeated."""
    done = None
    if stage.checkpoint_dir is not None and stage.unfreeze == 0:
        done = os.path.join(os.path.dirname(stage.checkpoint_dir), HEAD_STAGE_WEIGHTS)
        if os.path.exists(done):  # finished before a crash: keep its weights
            model.load_weights(done)
            return None
    blocks = model.set_unfreeze(stage.unfreeze)
    model.compile(learning_rate=stage.learning_rate, **compile_args)
    if plan.keras.get("verbose", "auto") != 0:
        print(describe(stage, blocks))
    fit_kwargs = dict(plan.keras)
    fit_kwargs["callbacks"] = list(fit_kwargs.get("callbacks") or []) + list(stage.callbacks)
    options = plan.options
    if stage.checkpoint_dir is not None:
        options = dataclasses.replace(options, checkpoint_dir=stage.checkpoint_dir)
    history = run_stage(
        model, prepared, validation, stage.end, options, fit_kwargs, initial_epoch=stage.start
    )
    if done is not None:
        model.save_weights(done)
    return history
