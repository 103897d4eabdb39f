"""Atomic saving: one mechanism for every file, crash- and kill-safe, with clear errors."""

import os
import pathlib
import random
import signal
import stat
import subprocess
import sys
import textwrap
import time
import warnings

import keras
import numpy as np
import pytest

import finetunekit as fk
from finetunekit.core import saving
from finetunekit.training.callbacks import AtomicModelCheckpoint
from tests.conftest import tiny_tuner
from tests.test_bad_inputs_saving import X8, Y8, Explode, interrupted_run

REPO = pathlib.Path(__file__).resolve().parents[1]


def _dead_pid():
    """The id of a process that has exited (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _leftovers(folder):
    return sorted(n for n in os.listdir(folder) if n.startswith(".finetunekit-"))


# ------------------------------------------------------------------ mechanism
def test_failed_write_keeps_the_previous_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "notes.txt"
    saving.atomic_write_text(target, "old")
    with pytest.raises(RuntimeError, match="disk full"):
        with saving.atomic_path(target) as temp:
            assert os.path.dirname(temp) == str(tmp_path)
            assert os.path.basename(temp).startswith(".finetunekit-tmp-")
            pathlib.Path(temp).write_text("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["notes.txt"]


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_written_files_follow_the_umask(tmp_path, umask):
    """Not mkstemp's 0600: a checkpoint, a model, weights and text get 0666 less the umask."""
    ft = tiny_tuner()
    old = os.umask(umask)
    try:
        ft.save(tmp_path / "m.keras")
        ft.save_weights(tmp_path / "m.weights.h5")
        saving.atomic_write_text(tmp_path / "labels.txt", "a\n")
        callback = AtomicModelCheckpoint(tmp_path / "best.keras", monitor="loss")
        callback.set_model(ft)
        callback.on_epoch_end(0, {"loss": 1.0})
        with saving.atomic_path(tmp_path / "folder", directory=True) as temp:
            pathlib.Path(temp, "x").write_text("x")
    finally:
        os.umask(old)
    for name in ("m.keras", "m.weights.h5", "labels.txt", "best.keras", "best.keras.json"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o666 & ~umask, name
    assert stat.S_IMODE(os.stat(tmp_path / "folder").st_mode) == 0o777 & ~umask


def test_leftovers_of_dead_writers_are_cleaned_by_the_next_write(tmp_path):
    dead, alive = _dead_pid(), os.getppid()
    names = {
        "dead": f".finetunekit-tmp-{dead}-0123abcd-m.keras",
        "alive": f".finetunekit-tmp-{alive}-0123abcd-m.keras",  # a concurrent writer
        "other_target": f".finetunekit-tmp-{dead}-0123abcd-other.keras",
    }
    for name in names.values():
        (tmp_path / name).write_bytes(b"partial")
    tiny_tuner().save(tmp_path / "m.keras")
    assert _leftovers(tmp_path) == sorted([names["alive"], names["other_target"]])
    assert isinstance(fk.load(tmp_path / "m.keras"), fk.FineTuner)


def test_folder_is_replaced_whole_and_an_old_one_set_aside_is_put_back(tmp_path):
    target = tmp_path / "export"
    for version in ("v1", "v2"):
        with saving.atomic_path(target, directory=True) as temp:
            pathlib.Path(temp, "version.txt").write_text(version)
    assert (target / "version.txt").read_text() == "v2"
    assert os.listdir(tmp_path) == ["export"]
    # A writer killed between its two renames left the old folder aside, none in place.
    aside = tmp_path / f".finetunekit-old-{_dead_pid()}-0123abcd-export"
    target.rename(aside)
    assert saving.clean_leftovers(target) == [aside.name]
    assert (target / "version.txt").read_text() == "v2"
    with pytest.raises(FileExistsError, match="already exists and overwrite=False"):
        with saving.atomic_path(target, directory=True, overwrite=False):
            pass


def test_finetuner_save_overwrite_false_refuses_without_prompting(tmp_path):
    path = tmp_path / "m.keras"
    tiny_tuner().save(path)
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match=r"Pass overwrite=True to replace it"):
        tiny_tuner(num_classes=3).save(path, overwrite=False)
    assert path.read_bytes() == before
    tiny_tuner(num_classes=3).save(path)  # overwrite=True (the default) replaces it
    assert fk.load(path).head.num_classes == 3


def test_saved_model_export_replaces_an_earlier_export_whole(tmp_path):
    ft = tiny_tuner(class_names=["cat", "dog"])
    target = tmp_path / "served"
    ft.export(str(target))
    first = (target / "saved_model.pb").stat().st_ino
    ft.export(str(target))
    assert (target / "saved_model.pb").stat().st_ino != first  # a new folder, swapped in
    assert (target / "labels.txt").read_text() == "cat\ndog\n"
    assert _leftovers(tmp_path) == []


# ------------------------------------------------------------------ kill test
# A helper process imports finetunekit once (a TensorFlow import takes seconds
# on a busy machine; no TensorFlow op has run yet) and, for each folder it reads
# on stdin, forks a writer and prints its pid. The writer loads the good model,
# then saves it over and over with the logits kernel set to version/100
# (versions 1, 2, ...), appending each version to log.txt once its save returned.
FORKER = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    import finetunekit as fk

    def write(path, log):
        ft = fk.load(path)
        kernel = [w for w in ft.weights if w.path.endswith("logits/kernel")][0]
        log.write("ready\\n")
        version = 0
        while True:
            version += 1
            kernel.assign(np.full(kernel.shape, version / 100, "float32"))
            ft.save(path)
            log.write(f"{version}\\n")

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # killed writers are reaped at once
    print("forker ready", flush=True)
    for line in sys.stdin:
        path = line.strip()
        pid = os.fork()
        if pid == 0:
            try:
                with open(os.path.join(os.path.dirname(path), "log.txt"), "w", buffering=1) as log:
                    write(path, log)
            finally:
                os._exit(1)
        print(pid, flush=True)
    """
)
TRIALS = 8


def _kernel(model):
    return [w for w in model.weights if w.path.endswith("logits/kernel")][0]


def _wait_for(condition, seconds, what):
    deadline = time.time() + seconds
    while not condition():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def _gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _kill_one_writer(forker, folder, good, delay):
    """Starts a writer on a copy of the good file and SIGKILLs it `delay` s after it is ready."""
    folder.mkdir()
    (folder / "m.keras").write_bytes(good)
    forker.stdin.write(f"{folder / 'm.keras'}\n")
    forker.stdin.flush()
    pid = int(forker.stdout.readline())
    log = folder / "log.txt"
    _wait_for(lambda: log.exists() and "ready" in log.read_text(), 60, "the writer")
    time.sleep(delay)
    os.kill(pid, signal.SIGKILL)
    _wait_for(lambda: _gone(pid), 10, "the killed writer to go")


def _check_after_kill(folder, reference, images):
    """Loads the file a killed writer left; returns (mid_write, version, last_reported)."""
    lines = (folder / "log.txt").read_text().split()
    reported = [int(v) for v in lines[lines.index("ready") + 1 :]]
    last = reported[-1] if reported else 0
    mid_write = bool(_leftovers(folder))
    loaded = fk.load(folder / "m.keras")  # must load: either the previous or the new content
    values = np.asarray(_kernel(loaded).numpy())
    version = int(round(float(values.flat[0]) * 100))
    assert np.all(values == np.float32(version / 100)), "a mix of two versions"
    assert version in (last, last + 1), (version, last)
    _kernel(reference).assign(np.full(values.shape, version / 100, "float32"))
    expected = reference.predict(images, verbose=0)
    np.testing.assert_allclose(loaded.predict(images, verbose=0), expected, rtol=1e-5)
    loaded.save(folder / "m.keras")  # the next write removes the killed writer's temporary
    assert _leftovers(folder) == []
    return mid_write, version, last


@pytest.mark.slow  # CI time budget; atomic replace is tested deterministically above
def test_sigkill_at_random_moments_never_breaks_the_saved_file(tmp_path):
    """Writers saving in a loop are SIGKILLed at seeded random moments; the file always loads."""
    reference = tiny_tuner()
    _kernel(reference).assign(np.zeros(_kernel(reference).shape, "float32"))
    reference.save(tmp_path / "good.keras")
    good = (tmp_path / "good.keras").read_bytes()
    (tmp_path / "forker.py").write_text(FORKER)
    env = dict(
        os.environ, PYTHONPATH=str(REPO / "src"), TF_CPP_MIN_LOG_LEVEL="3",
        KERAS_BACKEND="tensorflow",
    )
    forker = subprocess.Popen(
        [sys.executable, str(tmp_path / "forker.py")], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    )
    rng = random.Random(0)
    results = []
    try:
        assert forker.stdout.readline().strip() == "forker ready"
        for trial in range(TRIALS):
            folder = tmp_path / f"trial{trial}"
            _kill_one_writer(forker, folder, good, rng.uniform(0.05, 0.5))
            results.append(_check_after_kill(folder, reference, X8[:2]))
    finally:
        forker.stdin.close()
        forker.wait(timeout=30)
    mid_write = sum(r[0] for r in results)
    saves = sum(r[2] for r in results)
    after_replace = sum(r[1] == r[2] + 1 for r in results)
    print(
        f"\nkill test: {len(results)} kills, {mid_write} mid-write (temporary file present), "
        f"{after_replace} after the replace but before the writer reported it, "
        f"{saves} completed saves in all"
    )
    assert len(results) == TRIALS
    # Kills landed during saves, and some saves completed before a kill (how many
    # depends on the machine's load: a save takes 0.1-1 s on two busy cores).
    assert mid_write >= 1 and saves >= 1


def mounted_tmpfs(folder, options):
    """Mounts a tmpfs at `folder` (skips where mounting is not allowed); yields the folder."""
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a small filesystem here: {mounted.stderr.strip()}")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


@pytest.fixture
def small_disk(tmp_path):
    """An 80 KiB tmpfs: room for one tiny saved model, not for a second copy beside it."""
    yield from mounted_tmpfs(tmp_path / "small", "size=80k")


@pytest.fixture
def read_only_disk(tmp_path):
    """A read-only tmpfs (a permission error even for root)."""
    yield from mounted_tmpfs(tmp_path / "ro", "ro,size=80k")


def test_a_read_only_folder_names_the_path(read_only_disk):
    ft = tiny_tuner()
    for name, write in {
        "m.keras": lambda: ft.save(str(read_only_disk / "m.keras")),
        "served": lambda: ft.export(str(read_only_disk / "served")),
    }.items():
        with pytest.raises(OSError, match=rf"Could not write '.*ro/{name}': Read-only file system"):
            write()


def test_a_full_disk_names_the_path_and_keeps_the_previous_file(small_disk):
    ft = tiny_tuner()
    path = str(small_disk / "m.keras")
    ft.save(path)
    before = pathlib.Path(path).read_bytes()
    writes = {
        "m.keras": lambda: ft.save(path),
        "w.weights.h5": lambda: ft.save_weights(str(small_disk / "w.weights.h5")),
        "served": lambda: ft.export(str(small_disk / "served")),
    }
    for name, write in writes.items():
        with pytest.raises(OSError, match=rf"Could not write '.*small/{name}': the disk is full"):
            write()
        assert sorted(os.listdir(small_disk)) == ["m.keras"], name  # no temporary file left
    assert pathlib.Path(path).read_bytes() == before
    assert fk.load(path).predict(X8, verbose=0).shape == (8, 2)


# ------------------------------------------------------------ divergence, reruns
def test_on_nan_warn_restores_weights_and_keeps_the_backup_to_resume(tmp_path):
    folder = interrupted_run(tmp_path, finished=1, unfreeze="all")
    ft = tiny_tuner(unfreeze="all")
    good = {}

    class Record(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            good[epoch] = [np.array(w) for w in self.model.get_weights()]

    with pytest.warns(RuntimeWarning, match="Restored the weights and optimizer state"):
        with pytest.warns(UserWarning, match=r"last good epoch \(1\) is kept"):
            history = ft.fit(
                X8, Y8, epochs=4, batch_size=4, verbose=0, on_nan="warn",
                checkpoint_dir=folder, callbacks=[Record(), Explode()],
            )
    assert history.epoch == [1] and not np.isfinite(history.history["loss"][0])
    for now, before in zip(ft.get_weights(), good[1], strict=True):
        np.testing.assert_array_equal(now, before)  # back to the start of the diverged epoch
    assert all(np.isfinite(np.asarray(v)).all() for v in ft.optimizer.variables)
    backup = pathlib.Path(folder, "backup")
    assert (backup / "latest.weights.h5").exists() and (backup / "random_state.json").exists()
    # The kept backup resumes: a rerun without the NaN trains epochs 2-4 and cleans up.
    resumed = tiny_tuner(unfreeze="all").fit(
        X8, Y8, epochs=4, batch_size=4, verbose=0, checkpoint_dir=folder
    )
    assert resumed.epoch == [1, 2, 3] and np.isfinite(resumed.history["loss"]).all()
    assert not backup.exists()


def test_on_nan_warn_without_checkpoint_dir_restores_weights():
    ft = tiny_tuner(unfreeze="all")
    with pytest.warns(RuntimeWarning, match=r"start of epoch 1 \(the last finite ones\)"):
        ft.fit(X8, Y8, epochs=3, batch_size=4, verbose=0, on_nan="warn", callbacks=[Explode()])
    assert all(np.isfinite(w).all() for w in ft.get_weights())
    assert ft.predict(X8, verbose=0).shape == (8, 2)


@pytest.mark.parametrize("on_nan", ["warn", "raise"])
def test_weights_overflowed_by_the_last_update_of_an_epoch_are_caught(on_nan):
    """A learning rate past float32's range: the loss is finite, the update leaves inf weights."""
    ft = tiny_tuner(unfreeze="all")
    ft.compile(optimizer=keras.optimizers.SGD(learning_rate=1e39))  # inf in float32
    start = [np.array(w) for w in ft.get_weights()]
    message = r"The weights became NaN or infinite in the last update of epoch 1, although its loss"
    if on_nan == "raise":
        with pytest.raises(fk.TrainingDivergedError, match=message):
            ft.fit(X8, Y8, epochs=2, batch_size=8, verbose=0)
        return
    with pytest.warns(RuntimeWarning, match=message + r".*start of epoch 1 \(the last finite ones\)"):
        history = ft.fit(X8, Y8, epochs=2, batch_size=8, verbose=0, on_nan="warn")
    assert history.epoch == [0] and np.isfinite(history.history["loss"]).all()
    for now, before in zip(ft.get_weights(), start, strict=True):  # finite: the start of epoch 1
        np.testing.assert_array_equal(now, before)


def test_backup_of_another_model_leaves_the_weights_untouched(tmp_path):
    folder = interrupted_run(tmp_path)
    ft = tiny_tuner(num_classes=3)
    ft.compile()
    before = [np.array(w) for w in ft.get_weights()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Keras' optimizer-mismatch notice
        with pytest.raises(ValueError, match="holds the training state of a different model"):
            ft.fit(X8, Y8, epochs=5, batch_size=4, verbose=0, checkpoint_dir=folder)
    for now, then in zip(ft.get_weights(), before, strict=True):
        np.testing.assert_array_equal(now, then)
    assert pathlib.Path(folder, "backup", "latest.weights.h5").exists()  # not deleted


# ------------------------------------------------------------------------- CLI
def test_cli_reports_a_truncated_model_as_damaged_not_missing(tmp_path, capsys):
    from finetunekit.cli import EXIT_BAD_INPUT, main
    from tests.conftest import write_images

    path = tmp_path / "m.keras"
    tiny_tuner().save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    images = write_images(str(tmp_path / "images"), {"a": 1}, size=(16, 16))
    assert main(["predict", "--model", str(path), images]) == EXIT_BAD_INPUT
    error = capsys.readouterr().err
    assert "exists but is not a valid Keras archive" in error and "No saved model" not in error
    assert f"{len(data) // 3:,} bytes" in error
