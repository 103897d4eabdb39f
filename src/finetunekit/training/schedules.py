"""Training schedules: warm-up + cosine learning rate, and gradual unfreezing (ULMFiT)."""

import keras

from finetunekit.core._keras_compat import optimizer_tracks

SCHEDULES = ("constant", "cosine")


def build_learning_rate(learning_rate, schedule=None, warmup_steps=0, decay_steps=None, alpha=0.0):
    """Returns a float or a Keras schedule for `compile(schedule=...)`.

    Args:
        learning_rate: float. Peak (base) learning rate.
        schedule: None / `"constant"` (a constant rate) or `"cosine"`: linear
            warm-up from 0 to `learning_rate` over `warmup_steps`, then cosine
            decay over `decay_steps` steps (`keras.optimizers.schedules.CosineDecay`
            with `warmup_target`).
        warmup_steps: int. Warm-up steps. Defaults to `0`.
        decay_steps: int. Steps of cosine decay after the warm-up; required for
            `"cosine"` (e.g. `epochs * steps_per_epoch - warmup_steps`).
        alpha: float. Final rate as a fraction of `learning_rate`. Defaults to `0`.

    Returns:
        `learning_rate` or a `keras.optimizers.schedules.LearningRateSchedule`.
    """
    if schedule in (None, "constant"):
        if warmup_steps:
            raise ValueError('`warmup_steps` needs schedule="cosine".')
        return learning_rate
    if schedule != "cosine":
        raise ValueError(
            f'Unknown schedule "{schedule}". Expected one of "constant", "cosine". '
            f"Received: schedule={schedule!r}"
        )
    if not decay_steps or int(decay_steps) < 1:
        raise ValueError(
            'schedule="cosine" needs decay_steps (steps of decay after the warm-up, e.g. '
            f"epochs * steps_per_epoch - warmup_steps). Received: decay_steps={decay_steps!r}"
        )
    if int(warmup_steps) < 0:
        raise ValueError(f"`warmup_steps` must be >= 0. Received: warmup_steps={warmup_steps}")
    if not warmup_steps:
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=learning_rate, decay_steps=int(decay_steps), alpha=alpha
        )
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0,
        decay_steps=int(decay_steps),
        alpha=alpha,
        warmup_target=learning_rate,
        warmup_steps=int(warmup_steps),
    )


def _rebuild_optimizer(old, variables):
    """A new optimizer like `old`, built for `variables`, with `old`'s state copied by path."""
    new = keras.optimizers.deserialize(keras.optimizers.serialize(old))
    new.build(variables)
    if old.built:
        values = {v.path: v for v in old.variables}
        for variable in new.variables:
            source = values.get(variable.path)
            if source is not None and tuple(source.shape) == tuple(variable.shape):
                variable.assign(source)
    return new


@keras.saving.register_keras_serializable(package="finetunekit")
class GradualUnfreezing(keras.callbacks.Callback):
    """Unfreezes one more backbone block every `every` epochs (ULMFiT's gradual unfreezing).

    Epochs `0 .. every-1` train the head only, epochs `every .. 2*every-1`
    also the top block, and so on, up to `max_blocks` blocks (all blocks when
    None). Works with a `fk.FineTuner`: each stage calls `set_unfreeze` and
    re-traces the train function (`make_train_function(force=True)`). At the
    start of training the optimizer is rebuilt once for every variable that
    will ever train (its state for the head is kept), since a Keras optimizer
    only updates variables it was built with.

    Args:
        every: int >= 1. Epochs per stage.
        max_blocks: int or None. Most blocks unfrozen.
        start_epoch: int. Epoch at which counting starts. Defaults to `0`.
        initial_blocks: int. Blocks unfrozen from `start_epoch` on (0: the
            first stage trains the head only). Defaults to `0`.
        verbose: int. Print a line at each change. Defaults to `0`.

    Example:
    ```python
    ft.fit(x, y, epochs=6, callbacks=[fk.schedules.GradualUnfreezing(every=2, max_blocks=2)])
    ```
    """

    #: Tells `FineTuner.fit` not to cache backbone features (the backbone will train).
    changes_trainable = True

    def __init__(self, every=1, max_blocks=None, start_epoch=0, initial_blocks=0, verbose=0):
        super().__init__()
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"`every` must be an int >= 1. Received: every={every!r}")
        if max_blocks is not None and (not isinstance(max_blocks, int) or max_blocks < 0):
            raise ValueError(f"`max_blocks` must be an int >= 0 or None. Received: {max_blocks!r}")
        self.every = every
        self.max_blocks = max_blocks
        self.start_epoch = int(start_epoch)
        self.initial_blocks = int(initial_blocks)
        self.verbose = verbose
        self.stages = []  # (epoch, unfrozen block names)

    def _num_blocks(self):
        groups = [name for name, _ in self.model.backbone_kind.groups() if name != "stem"]
        return len(groups) if self.max_blocks is None else min(self.max_blocks, len(groups))

    def blocks_at(self, epoch):
        """Number of blocks unfrozen during `epoch` (0-based)."""
        stage = max(0, epoch - self.start_epoch) // self.every
        return min(self._num_blocks(), self.initial_blocks + stage)

    def on_train_begin(self, logs=None):
        model = self.model
        if not hasattr(model, "set_unfreeze"):
            raise ValueError("GradualUnfreezing needs a finetunekit FineTuner model.")
        self._current = model.unfreeze
        final = self._num_blocks()
        model.set_unfreeze(final)
        final_variables = list(model.trainable_variables)
        model.set_unfreeze(self._current)
        optimizer = model.optimizer
        if not optimizer_tracks(optimizer, final_variables):
            model.optimizer = _rebuild_optimizer(optimizer, final_variables)
            model.make_train_function(force=True)

    def on_epoch_begin(self, epoch, logs=None):
        blocks = self.blocks_at(epoch)
        if blocks != self._current:
            names = self.model.set_unfreeze(blocks)
            self._current = blocks
            self.model.make_train_function(force=True)
            self.stages.append((epoch, list(names)))
            if self.verbose:
                print(f"GradualUnfreezing: epoch {epoch + 1}: training blocks {names}")

    def get_config(self):
        return {
            "every": self.every,
            "max_blocks": self.max_blocks,
            "start_epoch": self.start_epoch,
            "initial_blocks": self.initial_blocks,
            "verbose": self.verbose,
        }
