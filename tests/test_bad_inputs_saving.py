"""The bad-input catalogue, part 2: saving, loading and checkpoints.

One row per case: `(id, run, error, fragment)`, as in `tests/test_bad_inputs.py`.
`run(tmp_path)` performs the call; `error` is the exception (or, for a
warning, the warning class, turned into an error for the row) and `fragment`
a regular expression the message must contain: what is wrong, what was
received and the fix. The same rows are in docs/errors.md ("Saving, loading
and checkpoints").
"""

import os
import warnings

import keras
import numpy as np
import pytest

import finetunekit as fk
from finetunekit.core.saving import CorruptFileError
from tests.catalogue import run_case, undocumented
from tests.conftest import tiny_cnn, tiny_tuner

X8 = np.random.default_rng(0).integers(0, 255, (8, 16, 16, 3)).astype("uint8")
Y8 = np.arange(8) % 2


class Interrupt(keras.callbacks.Callback):
    """Stops a run at the start of epoch `at`, as a crash would (the backup stays)."""

    def __init__(self, at):
        super().__init__()
        self.at = at

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.at:
            raise KeyboardInterrupt("simulated crash")


def interrupted_run(tmp, finished=2, **kwargs):
    """Trains `finished` epochs into `tmp/ckpt`, then crashes; returns the folder."""
    folder = str(tmp / "ckpt")
    with pytest.raises(KeyboardInterrupt):
        tiny_tuner(**kwargs).fit(
            X8, Y8, epochs=finished + 3, batch_size=4, verbose=0, checkpoint_dir=folder,
            callbacks=[Interrupt(finished)],
        )
    return folder


def resume_on_other_classes(tmp):
    """A run on cat/dog interrupted, then resumed from its checkpoint_dir on ant/bee."""
    folder = str(tmp / "ckpt")
    names = np.array(["cat", "dog"])[Y8]
    with pytest.raises(KeyboardInterrupt):
        tiny_tuner().fit(X8, names, epochs=4, batch_size=4, verbose=0, checkpoint_dir=folder,
                         callbacks=[Interrupt(1)])
    other = np.array(["ant", "bee"])[Y8]
    return tiny_tuner().fit(X8, other, epochs=4, batch_size=4, verbose=0, checkpoint_dir=folder)


def rerun(tmp, epochs, **kwargs):
    folder = interrupted_run(tmp)
    return tiny_tuner(**kwargs).fit(
        X8, Y8 % kwargs.get("num_classes", 2), epochs=epochs, batch_size=4, verbose=0,
        checkpoint_dir=folder,
    )


def as_error(category, run):
    """Runs `run` with warnings of `category` raised, so a row can check the message."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", category)
        return run()


def saved(tmp, name="m.keras"):
    path = str(tmp / name)
    tiny_tuner().save(path)
    return path


def cut(path, keep=0.5, name=None):
    """Writes the first `keep` fraction of `path` to `name` (default: in place); returns it."""
    with open(path, "rb") as f:
        data = f.read()
    target = name or path
    with open(target, "wb") as f:
        f.write(data[: int(len(data) * keep)])
    return target


def rewritten(tmp, name, replace):
    """A copy of a saved model whose members are replaced: `replace(member name, bytes) -> bytes`."""
    import zipfile

    with zipfile.ZipFile(saved(tmp)) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    path = str(tmp / name)
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in members.items():
            new = replace(member, data)
            if new is not None:
                archive.writestr(member, new)
    return path


def weights_of_another_head(tmp):
    import zipfile

    other = str(tmp / "other.keras")
    tiny_tuner(head=fk.ClassificationHead(5)).save(other)
    with zipfile.ZipFile(other) as archive:
        weights = archive.read("model.weights.h5")
    return fk.load(rewritten(tmp, "mixed.keras", lambda n, d: weights if n.endswith(".h5") else d))


HOSTILE_CONFIG = b'{"module": "os", "class_name": "system", "config": {"command": "echo x"}}'


def damaged(tmp):
    path = saved(tmp)
    with open(path, "rb") as f:
        data = bytearray(f.read())
    middle = len(data) // 2
    data[middle : middle + 256] = bytes(256)  # inside the weights member: bad CRC
    with open(path, "wb") as f:
        f.write(bytes(data))
    return fk.load(path)


def truncated_best_in_checkpoint_dir(tmp):
    folder = interrupted_run(tmp)
    return fk.load(cut(os.path.join(folder, "best.keras")))


def weights_file(tmp, content=None, keep=None):
    path = str(tmp / "b.weights.h5")
    tiny_cnn().save_weights(path)
    if content is not None:
        with open(path, "wb") as f:
            f.write(content)
    if keep is not None:
        cut(path, keep)
    return fk.FineTuner(tiny_cnn(), fk.ClassificationHead(2), weights=path)


def overwrite_refused(tmp, weights=False):
    ft = tiny_tuner()
    if weights:
        path = str(tmp / "w.weights.h5")
        ft.save_weights(path)
        return ft.save_weights(path, overwrite=False)
    return ft.save(saved(tmp), overwrite=False)


class Explode(keras.callbacks.Callback):
    """Puts NaN into a kernel before the second batch of each epoch: the loss becomes NaN."""

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 1:
            kernel = self.model.trainable_weights[0]
            kernel.assign(np.full(kernel.shape, np.nan, "float32"))


def overflowing_update(tmp):
    """SGD at a learning rate past float32's range: a finite loss, then inf weights."""
    ft = tiny_tuner(unfreeze="all")
    ft.compile(optimizer=keras.optimizers.SGD(learning_rate=1e39))
    return ft.fit(X8, Y8, epochs=2, batch_size=8, verbose=0)


def diverging_run(tmp, category):
    """Resumes a run interrupted after epoch 1, diverging in epoch 2 with on_nan="warn".

    Warnings of `category` are raised (to check their message); the guard's
    RuntimeWarning is otherwise ignored.
    """
    folder = interrupted_run(tmp, finished=1, unfreeze="all")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("error", category)
        return tiny_tuner(unfreeze="all").fit(
            X8, Y8, epochs=6, batch_size=4, verbose=0, on_nan="warn", checkpoint_dir=folder,
            callbacks=[Explode()],
        )


def export_over(tmp, existing):
    target = tmp / "out"
    if existing == "file":
        target = tmp / "m.keras"
        target.write_bytes(b"a model")
    else:
        target.mkdir()
        (target / "notes.txt").write_text("mine")
    return tiny_tuner().export(str(target))


# fmt: off
CASES = [
    # ---- saving
    ("save_overwrite_false_on_existing_file", overwrite_refused, FileExistsError, r"m\.keras' already exists and overwrite=False\. Pass overwrite=True to replace it"),
    ("save_weights_overwrite_false_on_existing_file", lambda t: overwrite_refused(t, weights=True), FileExistsError, r"w\.weights\.h5' already exists and overwrite=False\. Pass overwrite=True"),
    ("save_without_keras_suffix", lambda t: tiny_tuner().save(str(t / "model.zip")), ValueError, r'save\(\) writes a "\.keras" file\. Received: filepath=.*model\.zip\'\. Use a path ending in "\.keras"'),
    ("save_weights_without_weights_h5_suffix", lambda t: tiny_tuner().save_weights(str(t / "w.h5")), ValueError, r'save_weights\(\) writes a "\.weights\.h5" file\. Received: filepath=.*w\.h5\'\. Use a path ending in "\.weights\.h5"'),
    # ---- loading damaged files
    ("load_truncated_keras_file", lambda t: fk.load(cut(saved(t))), CorruptFileError, r"m\.keras' exists but is not a valid Keras archive \(a \.keras file is a zip archive\): it is [\d,]+ bytes and has no zip directory at its end \(truncated\)\. .*save the model again"),
    ("load_folder_named_keras", lambda t: fk.load(str((t / "m.keras").mkdir() or t / "m.keras")), ValueError, r"m\.keras' is a folder, not a \.keras file: fk\.load reads the one zip file that ft\.save\(\"model\.keras\"\) writes"),
    ("load_zip_without_config", lambda t: fk.load(rewritten(t, "z.keras", lambda n, d: None if n == "config.json" else d)), CorruptFileError, r"z\.keras' exists but is not a valid Keras archive .* is a zip archive without the config\.json a Keras model file holds"),
    ("load_config_not_json", lambda t: fk.load(rewritten(t, "j.keras", lambda n, d: b"{not json" if n == "config.json" else d)), CorruptFileError, r"j\.keras' .* has a config\.json that is not JSON"),
    ("load_junk_weights_in_archive", lambda t: fk.load(rewritten(t, "w.keras", lambda n, d: b"junk" if n.endswith(".h5") else d)), CorruptFileError, r"w\.keras' .* holds weights \(model\.weights\.h5\) that are not an HDF5 file"),
    ("load_weights_of_another_head", weights_of_another_head, CorruptFileError, r"mixed\.keras': its weights do not fit its model \(.*logits.*\); the archive was put together from two different models or damaged"),
    ("load_unknown_class_in_config", lambda t: fk.load(rewritten(t, "h.keras", lambda n, d: HOSTILE_CONFIG if n == "config.json" else d)), ValueError, r"h\.keras' names a class this Python session does not know \(class 'system'\); no code from the file was run"),
    ("load_empty_keras_file", lambda t: fk.load(cut(saved(t), keep=0)), CorruptFileError, r"not a valid Keras archive .*: it is empty, 0 bytes"),
    ("load_damaged_keras_file", damaged, CorruptFileError, r"not a valid Keras archive .*: it is [\d,]+ bytes and is damaged \(Bad CRC-32"),
    ("load_truncated_best_keras_in_checkpoint_dir", truncated_best_in_checkpoint_dir, CorruptFileError, r"best\.keras' exists but is not a valid Keras archive .* The last good checkpoint is the training state in '.*latest\.weights\.h5' after epoch 2: rerun the same fit\(\.\.\., checkpoint_dir='.*ckpt'\) to resume"),
    ("truncated_keras_file_as_backbone", lambda t: fk.FineTuner(cut(saved(t)), fk.ClassificationHead(2)), CorruptFileError, r"m\.keras' exists but is not a valid Keras archive"),
    ("truncated_keras_file_as_weights", lambda t: fk.FineTuner(tiny_cnn(), fk.ClassificationHead(2), weights=cut(saved(t))), CorruptFileError, r"m\.keras' exists but is not a valid Keras archive"),
    ("weights_file_not_hdf5", lambda t: weights_file(t, content=b"not hdf5 at all"), CorruptFileError, r"b\.weights\.h5' exists but is not an HDF5 weights file \(15 bytes; no HDF5 signature\)\. .*Save the weights again"),
    ("truncated_weights_file", lambda t: weights_file(t, keep=0.5), CorruptFileError, r"b\.weights\.h5' exists but is a truncated or damaged HDF5 weights file \([\d,]+ bytes; h5py: .*truncated.*\)\. Save the weights again"),
    # ---- checkpoint_dir reruns
    ("checkpoint_dir_is_a_file", lambda t: tiny_tuner().fit(X8, Y8, epochs=1, verbose=0, checkpoint_dir=str((t / "f").write_text("x") and t / "f")), ValueError, r"checkpoint_dir='.*f' is a file; it must be a folder"),
    ("checkpoint_rerun_with_fewer_epochs", lambda t: rerun(t, epochs=1), ValueError, r"checkpoint_dir '.*ckpt' holds a run that already finished 2 epochs, but epochs=1: nothing would train\. Pass epochs > 2 to train on from epoch 3, or use a new checkpoint_dir, or delete"),
    ("checkpoint_rerun_with_as_many_epochs", lambda t: as_error(UserWarning, lambda: rerun(t, epochs=2)), UserWarning, r"holds a run that already finished all 2 epochs: its weights are restored and nothing is left to train\. Pass epochs > 2"),
    ("checkpoint_rerun_with_another_head", lambda t: rerun(t, epochs=5, num_classes=3), ValueError, r"checkpoint_dir '.*ckpt' holds the training state of a different model .*: it cannot be restored into this one\. To train this model, use a new checkpoint_dir, or delete '.*backup' to start over"),
    ("checkpoint_kept_after_divergence", lambda t: diverging_run(t, UserWarning), UserWarning, r"Training diverged; the state after the last good epoch \(1\) is kept in '.*backup'\. Rerun fit\(\.\.\., checkpoint_dir='.*ckpt'\) to resume"),
    ("weights_overflow_in_the_last_update", overflowing_update, fk.TrainingDivergedError, r"The weights became NaN or infinite in the last update of epoch 1, although its loss was finite: the learning rate is too high"),
    ("checkpoint_of_other_classes", resume_on_other_classes, ValueError, r"holds a run on the classes \['cat', 'dog'\], but this fit has the classes \['ant', 'bee'\]: resuming would train one model on two meanings of its outputs"),
    ("nan_loss_with_on_nan_warn", lambda t: diverging_run(t, RuntimeWarning), RuntimeWarning, r"Training diverged: .* Training stopped\. Restored the weights and optimizer state from the start of epoch 2 \(the last finite ones\)"),
    # ---- export
    ("export_to_an_existing_file", lambda t: export_over(t, "file"), ValueError, r"export\(\) writes a folder, but '.*m\.keras' is an existing file\. Pass the path of a new folder, .* To write a \.keras file, use ft\.save"),
    ("saved_model_export_over_a_folder_of_other_files", lambda t: export_over(t, "folder"), FileExistsError, r"replaces the whole folder '.*out', which holds other files \(it is not an earlier SavedModel export\)\. Export to a new or empty folder"),
]
# fmt: on


@pytest.mark.parametrize("case_id,run,error,fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input(tmp_path, case_id, run, error, fragment):
    run_case(run, error, fragment, tmp_path)


def test_rows_are_documented():
    assert undocumented([c[0] for c in CASES], "Saving, loading and checkpoints") == []
