"""The private Keras internals finetunekit uses (finetunekit/core/_keras_compat.py) still exist and work."""

import keras
import numpy as np

from finetunekit.core import _keras_compat as compat


def test_private_keras_api_is_present():
    assert compat.check_private_api() == keras.__version__


def test_check_fails_loudly_when_an_attribute_disappears(monkeypatch):
    monkeypatch.setattr(compat, "PRIVATE_MODEL_METHODS", ("_no_such_method",))
    try:
        compat.check_private_api()
    except RuntimeError as error:
        assert "keras.Model._no_such_method" in str(error)
        assert "_keras_compat.py" in str(error)
    else:
        raise AssertionError("check_private_api did not fail")


def test_optimizer_keys_and_tracking():
    dense = keras.layers.Dense(2)
    dense.build((None, 3))
    optimizer = keras.optimizers.Adam()
    assert not compat.optimizer_tracks(optimizer, dense.trainable_variables)
    optimizer.build(dense.trainable_variables)
    assert compat.optimizer_tracks(optimizer, dense.trainable_variables)
    keys = {compat.optimizer_variable_key(optimizer, v) for v in dense.trainable_variables}
    assert len(keys) == 2
    other = keras.layers.Dense(1)
    other.build((None, 2))
    assert not compat.optimizer_tracks(optimizer, other.trainable_variables)


def test_sublayers_reach_nested_layers():
    inner = keras.Sequential([keras.layers.Dense(2), keras.layers.BatchNormalization()])
    outer = keras.Sequential([keras.Input((3,)), inner, keras.layers.Dense(1)])
    kinds = [type(layer).__name__ for layer in compat.sublayers(outer)]
    assert "BatchNormalization" in kinds and kinds.count("Dense") == 2


def test_resumed_epoch_and_validation_flag():
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    assert compat.resumed_epoch(model) is None
    model._initial_epoch = 3  # what keras.callbacks.BackupAndRestore sets
    assert compat.resumed_epoch(model) == 3
    compat.forget_resumed_epoch(model)
    assert compat.resumed_epoch(model) is None
    assert compat.is_validation_inside_fit({"_use_cached_eval_dataset": True})
    assert not compat.is_validation_inside_fit({})


def test_backup_and_restore_still_sets_the_resumed_epoch(tmp_path):
    """keras.callbacks.BackupAndRestore still records the epoch it resumes from as model._initial_epoch."""
    x, y = np.zeros((4, 1)), np.zeros((4, 1))
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    backup = str(tmp_path / "backup")

    class Stop(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("interrupted")

    try:
        model.fit(x, y, epochs=4, verbose=0, callbacks=[keras.callbacks.BackupAndRestore(backup), Stop()])
    except RuntimeError:
        pass
    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen.append(compat.resumed_epoch(self.model))

    model.fit(x, y, epochs=4, verbose=0, callbacks=[keras.callbacks.BackupAndRestore(backup), Record()])
    assert seen == [2]  # epochs 0 and 1 finished before the interruption
