"""Training callbacks for reliability: divergence checks and crash-safe checkpoints.

`FineTuner.fit` adds `DivergenceGuard` by default (`on_nan="raise"`) and, with
`checkpoint_dir=...`, a `finetunekit.training.checkpoints.CheckpointBackup` (Keras'
`BackupAndRestore`: resumable state in `checkpoint_dir/backup`) and an
`AtomicModelCheckpoint` (the best model in `checkpoint_dir/best.keras`). All
their files are written with `finetunekit.core.files.atomic_path`.
"""

import json
import math
import os

import keras
import numpy as np

from finetunekit.core import files
from finetunekit.core._keras_compat import resumed_epoch
from finetunekit.core.notices import warn_user
from finetunekit.training.checkpoints import (  # noqa: F401 - RandomStateBackup was defined here
    CheckpointBackup,
    ForgetResumedEpoch,
    RandomStateBackup,
    diverged,
    restore,
    snapshot,
)

ON_NAN_MODES = ("raise", "warn", None)


class TrainingDivergedError(RuntimeError):
    """Raised when the training loss becomes NaN or infinite."""


def divergence_message(value, epoch, batch, policy=None, first_batch=None):
    """The message of `TrainingDivergedError`: what happened and the likely causes.

    `first_batch` (when before `batch`) says the loss was read after several
    steps in one call (`steps_per_execution`): the batches are then a range.
    """
    causes = [
        "the learning rate is too high (try compile(learning_rate=...) 10x lower)",
        "bad labels or NaN/inf values in the inputs or targets",
        "float16 overflow under mixed precision (try mixed_precision=False or \"bfloat16\")",
    ]
    if policy == "mixed_float16":
        causes.insert(0, causes.pop())  # the most likely cause under float16
    listed = "; ".join(f"({i}) {cause}" for i, cause in enumerate(causes, 1))
    where = f"batch {batch + 1}"
    if first_batch is not None and first_batch < batch:
        where = f"in batches {first_batch + 1}-{batch + 1}"
    return (
        f"Training diverged: the loss became {value} at epoch {epoch + 1}, {where}. "
        f"Likely causes: {listed}."
    )


def _validation_divergence_message(value, epoch, logs):
    """The message of `TrainingDivergedError` for a NaN/inf validation loss."""
    loss = (logs or {}).get("loss")
    trained = "" if loss is None else f" (the training loss was {float(np.asarray(loss)):.4g})"
    return (
        f"Training diverged: the validation loss (val_loss) became {value} at epoch "
        f"{epoch + 1}{trained}. Likely causes: (1) NaN/inf values or bad labels in the "
        "validation data (a tf.data.Dataset is not checked up front); (2) the model's outputs "
        "overflow on the validation data (try a lower learning rate, or mixed_precision=False)."
    )


class DivergenceGuard(keras.callbacks.Callback):
    """Stops training as soon as the loss, or an epoch's `val_loss`, is NaN or infinite.

    Unlike `keras.callbacks.TerminateOnNaN`, it says why this usually
    happens, and it watches the validation loss too. `FineTuner.fit` adds one
    by default.

    Args:
        on_nan: `"raise"` (raise `TrainingDivergedError`) or `"warn"` (stop
            training, put back the weights and optimizer state of the start
            of the diverged epoch, and warn; `fit` then returns the History
            so far). `"warn"` keeps a copy of those in memory at each epoch
            start. Defaults to `"raise"`.

    Example:
    ```python
    ft.fit(x, y, epochs=5, callbacks=[fk.callbacks.DivergenceGuard("warn")], on_nan=None)
    ```
    """

    #: A NaN loss stays in the epoch's running mean, so checking it once per
    #: `steps_per_execution` steps still catches it: cached training may run
    #: many steps per call with this callback.
    checks_running_loss = True

    def __init__(self, on_nan="raise"):
        super().__init__()
        if on_nan not in ("raise", "warn"):
            raise ValueError(f'`on_nan` must be "raise" or "warn". Received: on_nan={on_nan!r}')
        self.on_nan = on_nan
        self._epoch = 0
        self._first_batch = None
        self._saved = None
        self._saved_epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        if self.on_nan == "warn" and self._saved is None:
            self._keep(snapshot(self.model), epoch)

    def on_train_batch_begin(self, batch, logs=None):
        self._first_batch = batch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        value = float(np.asarray(loss))
        if math.isfinite(value):
            return
        self._stop(divergence_message(
            value, self._epoch, batch, getattr(self.model, "policy_name", None),
            self._first_batch,
        ))

    def on_epoch_end(self, epoch, logs=None):
        """A NaN/inf `val_loss`, or weights left non-finite by the last update, stop training.

        A batch's loss is computed before its update, so an update that
        overflows the weights can end an epoch with a finite loss; the
        weights themselves are checked before the epoch counts as good.
        """
        value = (logs or {}).get("val_loss")
        if value is not None and not math.isfinite(float(np.asarray(value))):
            self._stop(_validation_divergence_message(float(np.asarray(value)), epoch, logs))
            return
        if self.on_nan == "warn":
            current = snapshot(self.model)
            if _all_finite(current[0]):
                self._keep(current, epoch + 1)
                return
        elif all(_all_finite([w]) for w in self.model.trainable_weights):
            return
        self._stop(
            f"The weights became NaN or infinite in the last update of epoch {epoch + 1}, "
            "although its loss was finite: the learning rate is too high for this model. "
            "Lower it (e.g. 10x), or clip gradients (compile(optimizer=keras.optimizers.Adam("
            "learning_rate, clipnorm=1.0)))."
        )

    def _keep(self, saved, epoch):
        """Keeps `saved` (a `snapshot`) as the weights at the start of `epoch`, if finite."""
        if _all_finite(saved[0]):
            self._saved, self._saved_epoch = saved, epoch

    def _stop(self, message):
        """Stops training: raises, or (on_nan="warn") restores the last finite state and warns."""
        self.model.stop_training = True
        if self.on_nan == "raise":
            raise TrainingDivergedError(message)
        warn_user(f"{message} Training stopped. {self._restore()}", RuntimeWarning)

    def _restore(self):
        """Puts back the last finite snapshot; returns a sentence saying what was restored."""
        if self._saved is None:
            return "The weights were left as they are (no copy of good ones was taken)."
        where = f"from the start of epoch {self._saved_epoch + 1} (the last finite ones)"
        if restore(self.model, self._saved):
            return f"Restored the weights and optimizer state {where}."
        return (
            f"Restored the weights {where}; the optimizer state was not restored (it did "
            "not exist yet then): compile() again before training on."
        )


def _make_checkpoint_dir(folder):
    """Creates `folder` (and its parents), or names what is in the way."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ValueError(
            f"checkpoint_dir={folder!r} is a file; it must be a folder (it will hold best.keras "
            "and the backup to resume from). Pass the path of a new or existing folder."
        )
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:
        raise OSError(
            error.errno, f"Cannot create checkpoint_dir {folder!r}: {error.strerror}. Pass a "
            "folder you can write to."
        ) from None
    if not os.access(folder, os.W_OK):
        raise PermissionError(
            f"checkpoint_dir {folder!r} is not writable; training would fail at the first "
            "checkpoint. Pass a folder you can write to."
        )
    return folder


def _all_finite(arrays):
    return all(np.isfinite(np.asarray(keras.ops.convert_to_numpy(a))).all() for a in arrays)


class AtomicModelCheckpoint(keras.callbacks.Callback):
    """Saves the best model so that a crash mid-save never leaves a broken file.

    The model is written with `finetunekit.core.files.atomic_path`: to a
    temporary file in the target's folder, flushed to disk and moved over the
    target with `os.replace` (atomic on POSIX and Windows), so the previous
    file stays whole until the new one is complete. Epochs with a NaN/inf
    loss are never saved.

    Args:
        filepath: str. A `.keras` file (or `.weights.h5` with
            `save_weights_only=True`).
        monitor: str. The log to watch. Defaults to `"val_loss"`.
        mode: `"auto"`, `"min"` or `"max"`. `"auto"` means max for accuracy,
            AUC, precision, recall and F1 logs, min otherwise.
        save_best_only: bool. Save only when `monitor` improves. Defaults to
            `True`.
        save_weights_only: bool. Save weights instead of the whole model.
            Defaults to `False`.

    Example:
    ```python
    ft.fit(x, y, validation_split=0.2, epochs=5,
           callbacks=[fk.callbacks.AtomicModelCheckpoint("best.keras")])
    ```
    """

    def __init__(
        self,
        filepath,
        monitor="val_loss",
        mode="auto",
        save_best_only=True,
        save_weights_only=False,
    ):
        super().__init__()
        self.filepath = os.fspath(filepath)
        suffix = ".weights.h5" if save_weights_only else ".keras"
        if not self.filepath.endswith(suffix):
            raise ValueError(
                f'`filepath` must end in "{suffix}" (save_weights_only={save_weights_only}). '
                f"Received: filepath={self.filepath!r}"
            )
        if mode == "auto":
            higher = ("acc", "auc", "precision", "recall", "f1")
            mode = "max" if any(k in monitor.lower() for k in higher) else "min"
        if mode not in ("min", "max"):
            raise ValueError(f'`mode` must be "auto", "min" or "max". Received: mode={mode!r}')
        self.monitor = monitor
        self.mode = mode
        self.save_best_only = save_best_only
        self.save_weights_only = save_weights_only
        self.best = -np.inf if mode == "max" else np.inf
        self.suffix = suffix

    @property
    def state_path(self):
        """A small JSON file next to `filepath` with the best value so far."""
        return self.filepath + ".json"

    def on_train_begin(self, logs=None):
        # When BackupAndRestore resumed an interrupted run, keep its best value.
        if resumed_epoch(self.model) and os.path.exists(self.state_path):
            with open(self.state_path) as f:
                state = json.load(f)
            if state.get("monitor") == self.monitor and state.get("best") is not None:
                self.best = float(state["best"])

    def _improved(self, value):
        return value > self.best if self.mode == "max" else value < self.best

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if diverged(logs):  # a NaN/inf epoch is never worth keeping
            return
        if self.save_best_only:
            value = logs.get(self.monitor)
            if value is None:
                warn_user(
                    f"AtomicModelCheckpoint: no {self.monitor!r} in the logs "
                    f"(available: {sorted(logs)}); nothing saved.",
                )
                return
            value = float(value)
            if not math.isfinite(value) or not self._improved(value):
                return
            self.best = value
        self.save(self.filepath)
        files.atomic_write_text(
            self.state_path,
            json.dumps({"monitor": self.monitor, "best": float(self.best), "epoch": epoch}),
        )

    def save(self, filepath):
        """Writes the model (or its weights) to `filepath` atomically."""
        if self.save_weights_only:
            files.save_weights(self.model, filepath)
        else:
            files.save_model(self.model, filepath)


def training_callbacks(
    callbacks=None, on_nan="raise", checkpoint_dir=None, has_validation=False
):
    """Adds finetunekit's reliability callbacks to a user's callback list.

    Args:
        callbacks: list of Keras callbacks or None.
        on_nan: `"raise"`, `"warn"` or None (no divergence check). Defaults to
            `"raise"`.
        checkpoint_dir: str or None. With a folder, training state is backed
            up every epoch in `checkpoint_dir/backup` (a rerun of the same
            `fit` resumes after the last finished epoch; see
            `finetunekit.training.checkpoints.CheckpointBackup` for reruns with fewer
            epochs or another model) and the best model is kept in
            `checkpoint_dir/best.keras`.
        has_validation: bool. Monitor `val_loss` (True) or `loss` (False) for
            the best model.

    Returns:
        A new list of callbacks.
    """
    if on_nan not in ON_NAN_MODES:
        raise ValueError(
            f'`on_nan` must be "raise", "warn" or None. Received: on_nan={on_nan!r}'
        )
    callbacks = list(callbacks or [])
    guarded = any(
        isinstance(c, (DivergenceGuard, keras.callbacks.TerminateOnNaN)) for c in callbacks
    )
    if on_nan is not None and not guarded:
        callbacks.append(DivergenceGuard(on_nan))
    if checkpoint_dir is not None:
        checkpoint_dir = _make_checkpoint_dir(os.fspath(checkpoint_dir))
        backup = CheckpointBackup(checkpoint_dir)
        callbacks[:0] = [backup, RandomStateBackup(backup.backup_dir)]
        callbacks.append(ForgetResumedEpoch())
        callbacks.append(
            AtomicModelCheckpoint(
                os.path.join(checkpoint_dir, "best.keras"),
                monitor="val_loss" if has_validation else "loss",
            )
        )
    return callbacks
