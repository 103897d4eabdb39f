"""Crash-safe training: resumable checkpoints, atomic saves, divergence checks, safe loading."""

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import textwrap
import time

import keras
import numpy as np
import pytest

import finetunekit as fk
from finetunekit.training.callbacks import AtomicModelCheckpoint
from tests.conftest import tiny_tuner

REPO = pathlib.Path(__file__).resolve().parents[1]

# Trains 6 epochs with fixed seeds and deterministic ops. Every epoch start and
# end is appended to `log`. With `--slow`, the first run that sees no `paused`
# marker writes it and sleeps in the middle of epoch 3 (index 2), long enough
# to be killed; the rerun of the same command finds the marker and trains on.
TRAIN_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, time
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import keras, numpy as np, tensorflow as tf
    keras.utils.set_random_seed(0)
    tf.config.experimental.enable_op_determinism()
    import finetunekit as fk

    work, checkpoint_dir, slow = sys.argv[1], sys.argv[2], sys.argv[3] == "--slow"
    log = os.path.join(work, "log.txt")

    def note(text):
        with open(log, "a") as f:
            f.write(text + "\\n")
            f.flush()
            os.fsync(f.fileno())

    class Marker(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            note(f"begin {epoch}")
        def on_epoch_end(self, epoch, logs=None):
            note(f"end {epoch}")
        def on_train_batch_end(self, batch, logs=None):
            paused = os.path.join(work, "paused")
            if slow and self.params and not os.path.exists(paused) and batch == 1:
                if len([l for l in open(log) if l.startswith("end")]) == 2:
                    open(paused, "w").close()
                    note("sleeping")
                    time.sleep(120)

    inputs = keras.Input((16, 16, 3))
    h = keras.layers.Conv2D(4, 3, padding="same", name="block1_conv")(inputs)
    h = keras.layers.BatchNormalization(name="block1_bn")(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="block2_conv")(h)
    backbone = keras.Model(inputs, h)
    rng = np.random.default_rng(0)
    y = np.arange(48) % 2
    x = (rng.integers(0, 100, (48, 16, 16, 3)) + 120 * y[:, None, None, None]).astype("uint8")
    ft = fk.FineTuner(backbone, fk.ClassificationHead(2, hidden_units=(8,), dropout=0.2),
                      preprocessing="zero_one", unfreeze="all")
    ft.compile(learning_rate=1e-2)
    history = ft.fit(x, y, epochs=6, batch_size=8, validation_split=0.25, seed=0,
                     checkpoint_dir=checkpoint_dir, callbacks=[Marker()], verbose=0)
    np.save(os.path.join(work, "weights.npy"),
            np.concatenate([w.reshape(-1) for w in ft.get_weights()]))
    with open(os.path.join(work, "history.json"), "w") as f:
        json.dump({"epoch": history.epoch, "loss": history.history["loss"]}, f)
    """
)


def _command(work, checkpoint_dir, slow):
    script = work / "train.py"
    script.write_text(TRAIN_SCRIPT)
    return [sys.executable, str(script), str(work), str(checkpoint_dir), "--slow" if slow else "-"]


def _env():
    return dict(os.environ, PYTHONPATH=str(REPO / "src"), TF_CPP_MIN_LOG_LEVEL="3")


def test_killed_training_resumes_from_last_finished_epoch(tmp_path):
    """SIGKILL mid-epoch 3, rerun the same command: epochs 3-6 run and the weights match."""
    work, reference = tmp_path / "run", tmp_path / "reference"
    work.mkdir()
    reference.mkdir()
    checkpoint_dir = work / "checkpoints"
    command = _command(work, checkpoint_dir, slow=True)
    # The uninterrupted reference run goes alongside, to keep the test short.
    straight = subprocess.Popen(
        _command(reference, reference / "checkpoints", slow=False),
        env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    process = subprocess.Popen(command, env=_env(), stderr=subprocess.PIPE, text=True)
    log = work / "log.txt"
    deadline = time.time() + 120
    while time.time() < deadline:
        if log.exists() and "sleeping" in log.read_text():
            break
        if process.poll() is not None:
            straight.kill()
            pytest.fail(f"training exited early: {process.stderr.read()[-3000:]}")
        time.sleep(0.2)
    else:
        process.kill()
        straight.kill()
        pytest.fail("training never reached epoch 3")
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    assert (checkpoint_dir / "backup" / "training_metadata.json").exists()
    assert json.loads((checkpoint_dir / "backup" / "training_metadata.json").read_text())[
        "epoch"
    ] == 2
    assert (checkpoint_dir / "best.keras").exists()

    rerun = subprocess.run(command, env=_env(), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    events = [line for line in log.read_text().splitlines() if line != "sleeping"]
    first_run = ["begin 0", "end 0", "begin 1", "end 1", "begin 2"]
    second_run = [f"{what} {e}" for e in range(2, 6) for what in ("begin", "end")]
    assert events == first_run + second_run
    history = json.loads((work / "history.json").read_text())
    assert history["epoch"] == [2, 3, 4, 5]
    assert not (checkpoint_dir / "backup" / "latest.weights.h5").exists()  # cleaned at the end

    _, errors = straight.communicate(timeout=120)
    assert straight.returncode == 0, errors[-3000:]
    resumed = np.load(work / "weights.npy")
    uninterrupted = np.load(reference / "weights.npy")
    assert np.allclose(resumed, uninterrupted, rtol=1e-6, atol=1e-7)
    reference_history = json.loads((reference / "history.json").read_text())
    np.testing.assert_allclose(history["loss"], reference_history["loss"][2:], rtol=1e-6)


def _data(n=16):
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (n, 16, 16, 3)).astype("uint8"), np.arange(n) % 2


def test_checkpoint_dir_keeps_the_best_model(tmp_path):
    x, y = _data()
    ft = tiny_tuner()
    ft.fit(x, y, epochs=2, batch_size=8, checkpoint_dir=tmp_path, verbose=0, validation_split=0.25)
    best = tmp_path / "best.keras"
    state = json.loads((tmp_path / "best.keras.json").read_text())
    assert state["monitor"] == "val_loss"
    loaded = fk.load(best)
    assert isinstance(loaded, fk.FineTuner)
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".finetunekit-")]
    assert ft._initial_epoch is None  # a later fit starts from epoch 0 again


def test_atomic_checkpoint_leaves_previous_file_whole_when_save_crashes(tmp_path, monkeypatch):
    x, y = _data()
    ft = tiny_tuner()
    path = tmp_path / "best.keras"
    callback = AtomicModelCheckpoint(path, monitor="loss", save_best_only=False)
    callback.set_model(ft)
    callback.on_epoch_end(0, {"loss": 1.0})
    before = path.read_bytes()

    def crash(self, filepath, **kwargs):
        with open(filepath, "wb") as f:
            f.write(b"half a zip file")
        raise OSError("disk full")

    monkeypatch.setattr(keras.Model, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        callback.on_epoch_end(1, {"loss": 0.5})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["best.keras", "best.keras.json"] or sorted(
        os.listdir(tmp_path)
    ) == ["best.keras", "best.keras.json"]
    monkeypatch.undo()
    assert isinstance(fk.load(path), fk.FineTuner)


def test_atomic_checkpoint_saves_only_improvements(tmp_path):
    ft = tiny_tuner()
    callback = AtomicModelCheckpoint(tmp_path / "m.keras", monitor="val_accuracy")
    assert callback.mode == "max"
    callback.set_model(ft)
    callback.on_epoch_end(0, {"val_accuracy": 0.5})
    stamp = os.path.getmtime(tmp_path / "m.keras")
    time.sleep(0.01)
    callback.on_epoch_end(1, {"val_accuracy": 0.4})
    assert os.path.getmtime(tmp_path / "m.keras") == stamp
    with pytest.warns(UserWarning, match="no 'val_accuracy' in the logs"):
        callback.on_epoch_end(2, {"loss": 0.1})
    with pytest.raises(ValueError, match='must end in ".keras"'):
        AtomicModelCheckpoint(tmp_path / "m.h5")


def test_nan_loss_raises_training_diverged_error():
    x, y = _data()
    ft = tiny_tuner(unfreeze="all")
    ft.compile(learning_rate=1e12, weight_decay=0.0)
    with pytest.raises(fk.TrainingDivergedError, match="learning rate is too high") as info:
        ft.fit(x, y, epochs=5, batch_size=4, verbose=0)
    message = str(info.value)
    assert "loss became nan" in message or "loss became inf" in message
    assert "NaN/inf values in the inputs" in message and "float16 overflow" in message
    assert isinstance(info.value, RuntimeError)


def test_nan_loss_warn_mode_stops_and_returns_history():
    x, y = _data()
    ft = tiny_tuner(unfreeze="all")
    ft.compile(learning_rate=1e12, weight_decay=0.0)
    with pytest.warns(RuntimeWarning, match="Training diverged.*Training stopped"):
        history = ft.fit(x, y, epochs=20, batch_size=4, verbose=0, on_nan="warn")
    assert len(history.epoch) < 20


def test_nan_from_data_in_a_dataset_is_caught():
    import tensorflow as tf

    x, y = _data(8)
    x = x.astype("float32")
    x[3] = np.nan  # arrays are checked up front; a dataset is not
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    # The frozen tiny tuner trains on cached features, two steps per call: the
    # message names the range of batches the NaN came from.
    with pytest.raises(fk.TrainingDivergedError, match="in batches 1-2"):
        tiny_tuner().fit(ds, epochs=1, verbose=0)
    with pytest.raises(fk.TrainingDivergedError, match="epoch 1, batch 1\\."):
        tiny_tuner().fit(ds, epochs=1, verbose=0, cache_features=False)


def test_on_nan_argument_is_checked():
    x, y = _data(4)
    with pytest.raises(ValueError, match='`on_nan` must be "raise", "warn" or None'):
        tiny_tuner().fit(x, y, epochs=1, verbose=0, on_nan="ignore")


def test_lambda_layer_refused_in_safe_mode(tmp_path):
    inputs = keras.Input((4,))
    outputs = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    path = str(tmp_path / "lambda.keras")
    keras.Model(inputs, outputs).save(path)
    with pytest.raises(ValueError, match=r"holds code \(a Lambda layer.*safe_mode=False"):
        fk.load(path)
    model = fk.load(path, safe_mode=False)
    np.testing.assert_allclose(model.predict(np.ones((1, 4)), verbose=0), 2.0)


def test_no_pickle_anywhere_in_the_library():
    pattern = re.compile(r"^\s*(import|from)\s+(pickle|cPickle|cloudpickle|dill|joblib)\b", re.M)
    offenders = [
        str(path)
        for path in (REPO / "src").rglob("*.py")
        if pattern.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []
