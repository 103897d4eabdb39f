"""The resumable state of `fit(checkpoint_dir=...)`: weights, optimizer and random state.

`CheckpointBackup` is Keras' `BackupAndRestore` with finetunekit's rules:

- its files are written atomically (`finetunekit.core.files.atomic_path`);
- an epoch whose loss is NaN/inf is not backed up, and when training stopped
  on such an epoch (`on_nan="warn"`) the backup of the last good epoch is
  kept, so the run can resume from it;
- rerunning with fewer `epochs` than the backup already finished raises a
  `ValueError` (Keras would return an empty History); rerunning with exactly
  that number warns that there is nothing left to train;
- a backup that does not fit the model (another architecture or head)
  raises a `ValueError` naming the folder and the fix, and leaves the
  model's weights as they were.
"""

import json
import math
import os
import shutil

import keras
import numpy as np

from finetunekit.core._keras_compat import forget_resumed_epoch, resumed_epoch
from finetunekit.core.files import atomic_path, atomic_write_text, save_weights
from finetunekit.core.notices import warn_user


def diverged(logs):
    """Whether the epoch logs hold a NaN or infinite training or validation loss.

    Args:
        logs: dict or None. Epoch logs.

    Returns:
        bool.
    """
    for key in ("loss", "val_loss"):
        value = (logs or {}).get(key)
        if value is not None and not math.isfinite(float(np.asarray(value))):
            return True
    return False


def snapshot(model):
    """Copies the weights of `model` and of its optimizer, when built.

    Args:
        model: keras.Model.

    Returns:
        `(weights, optimizer_variables)`: two lists of numpy arrays (the
        second empty when the optimizer has no variables yet).
    """
    optimizer = getattr(model, "optimizer", None)
    slots = list(optimizer.variables) if optimizer is not None and optimizer.built else []
    return [_copy(w) for w in model.weights], [_copy(v) for v in slots]


def _copy(variable):
    return np.array(keras.ops.convert_to_numpy(variable), copy=True)


def restore(model, saved):
    """Puts back a `snapshot`. Returns whether the optimizer state was restored too.

    Args:
        model: keras.Model.
        saved: the result of `snapshot(model)`.

    Returns:
        bool: True when the optimizer variables were restored as well.
    """
    weights, slots = saved
    for variable, value in zip(model.weights, weights, strict=True):
        variable.assign(value)
    optimizer = getattr(model, "optimizer", None)
    variables = list(optimizer.variables) if optimizer is not None and optimizer.built else []
    if not slots or len(slots) != len(variables):
        return False
    for variable, value in zip(variables, slots, strict=True):
        variable.assign(value)
    return True


class CheckpointBackup(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` in `checkpoint_dir/backup`, atomic and explicit about reruns.

    Args:
        checkpoint_dir: str. The `fit(checkpoint_dir=...)` folder.

    Example:
    ```python
    ft.fit(x, y, epochs=5, callbacks=[CheckpointBackup("runs/exp1")])
    ```
    """

    def __init__(self, checkpoint_dir):
        self.checkpoint_dir = os.fspath(checkpoint_dir)
        super().__init__(os.path.join(self.checkpoint_dir, "backup"), double_checkpoint=True)
        self.diverged = False

    def finished_epochs(self):
        """The number of epochs the backup holds, or None without a (readable) backup."""
        if not os.path.exists(self._weights_path):
            return None
        try:
            with open(self._training_metadata_path) as f:
                return int(json.load(f)["epoch"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def on_train_begin(self, logs=None):
        self.diverged = False
        finished, epochs = self.finished_epochs(), (self.params or {}).get("epochs")
        fresh = f"use a new checkpoint_dir, or delete {self.backup_dir!r} to start over"
        if finished is not None and epochs is not None and epochs < finished:
            raise ValueError(
                f"checkpoint_dir {self.checkpoint_dir!r} holds a run that already finished "
                f"{finished} epochs, but epochs={epochs}: nothing would train. Pass "
                f"epochs > {finished} to train on from epoch {finished + 1}, or {fresh}."
            )
        self._check_class_names(fresh)
        saved = snapshot(self.model) if finished is not None else None
        try:
            super().on_train_begin(logs)
        except (ValueError, KeyError) as error:
            if saved is not None:
                restore(self.model, saved)
            raise ValueError(
                f"checkpoint_dir {self.checkpoint_dir!r} holds the training state of a "
                "different model (another architecture, head or optimizer): it cannot be "
                f"restored into this one. To train this model, {fresh}. (Keras: "
                f"{' '.join(line for line in str(error).splitlines()[:3] if line)})"
            ) from error
        if finished is not None and epochs == finished:
            warn_user(
                f"checkpoint_dir {self.checkpoint_dir!r} holds a run that already finished all "
                f"{finished} epochs: its weights are restored and nothing is left to train. "
                f"Pass epochs > {finished} to train on, or {fresh}.",
            )

    def _check_class_names(self, fresh):
        """Refuses to resume a run of other classes (same shapes, other meaning)."""
        try:
            with open(self._training_metadata_path) as f:
                saved = json.load(f).get("class_names")
        except (OSError, ValueError, AttributeError):
            return
        current = _class_names(self.model)
        if saved is not None and current is not None and list(saved) != list(current):
            raise ValueError(
                f"checkpoint_dir {self.checkpoint_dir!r} holds a run on the classes {saved}, but "
                f"this fit has the classes {current}: resuming would train one model on two "
                f"meanings of its outputs. To train on these classes, {fresh}."
            )

    def on_epoch_end(self, epoch, logs=None):
        if diverged(logs):
            self.diverged = True  # keep the backup of the last good epoch
            return
        super().on_epoch_end(epoch, logs)

    def on_train_end(self, logs=None):
        if not self.diverged:
            super().on_train_end(logs)
            return
        if self.finished_epochs() is not None:
            warn_user(
                f"Training diverged; the state after the last good epoch "
                f"({self.finished_epochs()}) is kept in {self.backup_dir!r}. Rerun fit(..., "
                f"checkpoint_dir={self.checkpoint_dir!r}) to resume from it once the cause "
                "is fixed, or delete the folder to start over.",
            )

    def _save_model(self):
        """Keras' backup (weights, then epoch metadata), each file written atomically."""
        os.makedirs(self.backup_dir, exist_ok=True)
        if self.double_checkpoint:
            for path, previous in (
                (self._weights_path, self._prev_weights_path),
                (self._training_metadata_path, self._prev_training_metadata_path),
            ):
                if os.path.exists(path):
                    with atomic_path(previous) as temp:
                        shutil.copyfile(path, temp)
        save_weights(self.model, self._weights_path)
        metadata = {
            "epoch": self._current_epoch, "batch": self._last_batch_seen,
            "class_names": _class_names(self.model),
        }
        atomic_write_text(self._training_metadata_path, json.dumps(metadata))


def _class_names(model):
    """The model's class names as a list of str, or None (no names, e.g. ids or regression)."""
    names = getattr(model, "class_names", None)
    return None if names is None else [str(name) for name in names]


class RandomStateBackup(keras.callbacks.Callback):
    """Backs up the random-number state of layers (dropout, augmentation) with each epoch.

    `keras.callbacks.BackupAndRestore` restores weights and optimizer state
    but not the seed-generator state of `Dropout` and augmentation layers, so
    a resumed run would draw different dropout masks than an uninterrupted
    one. This callback writes those states to `backup_dir/random_state.json`
    (atomically) at every epoch end and restores them when BackupAndRestore
    resumes at the same epoch. Put it after the BackupAndRestore callback.
    Epochs with a NaN/inf loss are not backed up, and the file is kept when
    training stopped on one (as `CheckpointBackup` keeps its own).

    Args:
        backup_dir: str. The BackupAndRestore folder.
        delete_checkpoint: bool. Delete the file when training ends, as
            BackupAndRestore does with its own. Defaults to `True`.

    Example:
    ```python
    callbacks = [keras.callbacks.BackupAndRestore("ckpt"), RandomStateBackup("ckpt")]
    ```
    """

    def __init__(self, backup_dir, delete_checkpoint=True):
        super().__init__()
        self.path = os.path.join(os.fspath(backup_dir), "random_state.json")
        self.delete_checkpoint = delete_checkpoint
        self._diverged = False

    def _states(self):
        return [v for v in self.model.variables if v.path.endswith("seed_generator_state")]

    def on_train_begin(self, logs=None):
        self._diverged = False
        epoch = resumed_epoch(self.model)
        if not epoch or not os.path.exists(self.path):
            return
        with open(self.path) as f:
            saved = json.load(f)
        states = self._states()
        if saved.get("epoch") != epoch or len(saved["states"]) != len(states):
            warn_user(
                "Resuming without the random state of dropout/augmentation layers (the backup "
                "does not match); the run will not repeat an uninterrupted one exactly.",
            )
            return
        for variable, value in zip(states, saved["states"], strict=True):
            variable.assign(np.asarray(value, dtype=variable.dtype))

    def on_epoch_end(self, epoch, logs=None):
        if diverged(logs):
            self._diverged = True
            return
        states = [np.asarray(v.numpy()).tolist() for v in self._states()]
        atomic_write_text(self.path, json.dumps({"epoch": epoch + 1, "states": states}))

    def on_train_end(self, logs=None):
        if self.delete_checkpoint and not self._diverged and os.path.exists(self.path):
            os.remove(self.path)


class ForgetResumedEpoch(keras.callbacks.Callback):
    """Clears the start epoch BackupAndRestore set, so a later `fit` starts at epoch 0."""

    def on_train_end(self, logs=None):
        forget_resumed_epoch(self.model)
