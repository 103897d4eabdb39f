"""Atomic file writes: every file finetunekit writes survives a kill at any moment.

Everything finetunekit writes (models, weights, checkpoints, exports and the
small JSON/text files beside them) goes through one mechanism, `atomic_path`:
the content is written to a temporary name in the target's folder
(`.finetunekit-tmp-<pid>-<random>-<name>`), flushed to disk with `fsync`, and
moved onto the target with `os.replace`, after which the folder itself is
synced. A crash or `SIGKILL` at any moment leaves either the previous file or
the new one, never a mix; a killed writer's temporary file is removed by the
next write to the target. Files get `0o666` less the umask.

A folder (a SavedModel export) is written to a temporary folder the same way
and renamed onto the target. When an older folder is there already, it is
first renamed aside (`.finetunekit-old-<pid>-<random>-<name>`), the new one
renamed in, and the old one deleted: between the two renames (two `rename`
system calls) the target is briefly absent. A writer killed in that window
leaves the old folder aside; the next write to the target puts it back before
anything else, so nothing is lost.

Temporary names carry the writer's process id: a leftover is only cleaned
when that process is gone (on Windows, when it is more than an hour old). On
a folder shared by several machines a leftover from a live writer elsewhere
could be cleaned; give concurrent writers different targets.
"""

import contextlib
import errno
import os
import re
import secrets
import shutil
import time

import keras

from finetunekit.core.file_checks import check_save_path

TEMP_PREFIX = ".finetunekit-tmp-"
ASIDE_PREFIX = ".finetunekit-old-"
_STALE_AGE_S = 3600  # Windows only: cannot probe a process id safely there


# ------------------------------------------------------------------ atomic writes
@contextlib.contextmanager
def atomic_path(target, directory=False, overwrite=True):
    """Yields a temporary path to write; on success it replaces `target` atomically.

    The temporary file (or folder) is in the target's folder; once the body
    of the `with` block returns it is synced to disk and moved onto the
    target, and the folder is synced. If the body raises, it is removed and
    the target is left as it was. A remote target (`gs://...`, `hf://...`)
    is yielded as it is: object stores replace whole objects.

    Args:
        target: str or path. The file (or folder) to write.
        directory: bool. Write a folder instead of a file. Defaults to `False`.
        overwrite: bool. Replace an existing target. With `False`, an existing
            target raises `FileExistsError` before anything is written.
            Defaults to `True`.

    Yields:
        str. A path in the target's folder: an empty file (or an empty
        folder with `directory=True`) to fill.

    Raises:
        FileExistsError: the target exists and `overwrite=False`.

    Example:
    ```python
    with atomic_path("scores.csv") as temp:
        frame.to_csv(temp)
    ```
    """
    if _is_remote(target):
        yield os.fspath(target)
        return
    clean_leftovers(target)  # first: it may put back a folder a killed writer set aside
    refuse_overwrite(target, overwrite)
    target = os.path.abspath(os.fspath(target))
    folder, name = os.path.split(target)
    try:
        os.makedirs(folder, exist_ok=True)
        temp = _new_temp(folder, name, directory)
    except OSError as error:
        _raise_write_error(error, target)
        raise
    try:
        yield temp
        if directory:
            _fsync_tree(temp)
            _install_folder(temp, target)
        else:
            _fsync_file(temp)
            os.replace(temp, target)
    except BaseException as error:
        _remove(temp)
        _raise_write_error(error, target)
        raise
    _fsync_dir(folder)


def _raise_write_error(error, target):
    """Re-raises a full disk or a refused write as an `OSError` that names `target`."""
    if _out_of_space(error):
        raise OSError(
            errno.ENOSPC, f"Could not write {target!r}: the disk is full or the file is too "
            f"large for it ({_first_line(error)}). Nothing was changed: "
            + ("the previous version is intact" if os.path.exists(target) else
               "no partial file was left") + ". Free some space or write elsewhere."
        ) from None
    if isinstance(error, OSError) and error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        raise OSError(
            error.errno, f"Could not write {target!r}: {error.strerror} (the folder is "
            "read-only or not yours). Nothing was changed. Write elsewhere, or fix the "
            "folder's permissions."
        ) from None


#: errno values of a write that found no room: no space, file too large, quota exceeded.
_NO_ROOM = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}


def _out_of_space(error):
    """True for an error (or one it wraps) that says the disk or file-size limit was hit."""
    seen = 0
    while error is not None and seen < 5:
        if isinstance(error, OSError) and error.errno in _NO_ROOM:
            return True
        text = str(error)
        if "No space left" in text or "File too large" in text or "errno = 28" in text \
                or "errno = 27" in text or "Disk quota exceeded" in text:
            return True
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False


def _first_line(error):
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[0] if lines else type(error).__name__)[:200]


def refuse_overwrite(path, overwrite):
    """Raises `FileExistsError` when `path` exists and `overwrite` is False.

    Args:
        path: str. The file or folder about to be written.
        overwrite: bool.

    Raises:
        FileExistsError: naming the path and the fix.

    Example:
    ```python
    refuse_overwrite("model.keras", overwrite=False)
    ```
    """
    if not overwrite and os.path.lexists(path):
        raise FileExistsError(
            f"{os.fspath(path)!r} already exists and overwrite=False. Pass overwrite=True to "
            "replace it (atomically: the old file stays whole until the new one is "
            "complete), or choose another path."
        )


def atomic_write_bytes(path, data, overwrite=True):
    """Writes `data` to `path` atomically (see `atomic_path`).

    Args:
        path: str. The file to write.
        data: bytes.
        overwrite: bool. Replace an existing file. Defaults to `True`.

    Example:
    ```python
    atomic_write_bytes("model.tflite", flatbuffer)
    ```
    """
    with atomic_path(path, overwrite=overwrite) as temp:
        with open(temp, "wb") as f:
            f.write(data)


def atomic_write_text(path, text, overwrite=True):
    """Writes `text` (UTF-8) to `path` atomically (see `atomic_path`).

    Args:
        path: str. The file to write.
        text: str.
        overwrite: bool. Replace an existing file. Defaults to `True`.

    Example:
    ```python
    atomic_write_text("labels.txt", "cat\\ndog\\n")
    ```
    """
    atomic_write_bytes(path, text.encode("utf-8"), overwrite=overwrite)


def clean_leftovers(target):
    """Removes what killed writers of `target` left in its folder; returns the names removed.

    A temporary file or folder whose writer process is gone is deleted. An
    old folder set aside by a writer killed mid-swap is put back when the
    target is missing (and deleted otherwise).

    Args:
        target: str. The file or folder a writer was writing.

    Returns:
        list of str: the leftover names removed or put back.

    Example:
    ```python
    clean_leftovers("checkpoints/best.keras")  # atomic_path calls it before each write
    ```
    """
    folder, name = os.path.split(os.path.abspath(os.fspath(target)))
    pattern = re.compile(rf"^\.finetunekit-(tmp|old)-(\d+)-[0-9a-f]{{8}}-{re.escape(name)}$")
    try:
        entries = sorted(os.listdir(folder))
    except FileNotFoundError:
        return []
    cleaned = []
    for entry in entries:
        match = pattern.match(entry)
        path = os.path.join(folder, entry)
        if not match or not _abandoned(int(match.group(2)), path):
            continue
        if match.group(1) == "old" and not os.path.lexists(os.path.join(folder, name)):
            os.rename(path, os.path.join(folder, name))
        else:
            _remove(path)
        cleaned.append(entry)
    return cleaned


def _abandoned(pid, path):
    """Whether the writer `pid` of `path` is gone."""
    if pid == os.getpid():
        return False
    if os.name == "nt":
        return time.time() - os.path.getmtime(path) > _STALE_AGE_S
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: alive, another user's
        return False
    return False


def _new_temp(folder, name, directory):
    """Creates an empty temporary file (mode 0o666 less the umask) or folder beside the target."""
    while True:
        temp = os.path.join(folder, f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-{name}")
        try:
            if directory:
                os.mkdir(temp, 0o777)
            else:
                os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return temp
        except FileExistsError:
            continue


def _install_folder(temp, target):
    if not os.path.lexists(target):
        os.rename(temp, target)
        return
    folder, name = os.path.split(target)
    aside = os.path.join(folder, f"{ASIDE_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-{name}")
    os.rename(target, aside)  # the target is absent from here...
    try:
        os.rename(temp, target)  # ...to here
    except BaseException:
        os.rename(aside, target)
        raise
    _remove(aside)


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def _fsync_file(path):
    with open(path, "rb+" if os.name == "nt" else "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path):
    if os.name == "nt":  # folders cannot be opened for fsync on Windows
        return
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    except OSError:  # some file systems do not sync folders
        pass
    finally:
        os.close(handle)


def _fsync_tree(root):
    for folder, _, files in os.walk(root, topdown=False):
        for name in files:
            _fsync_file(os.path.join(folder, name))
        _fsync_dir(folder)


# --------------------------------------------------------------- models, weights
def save_model(model, filepath, overwrite=True, zipped=None, **kwargs):
    """Saves `model` as a `.keras` file atomically (`FineTuner.save` calls this).

    Args:
        model: keras.Model.
        filepath: str. A `.keras` file (a folder with `zipped=False`).
        overwrite: bool. Replace an existing file. With `False`, an existing
            file raises `FileExistsError` (Keras would prompt on stdin).
            Defaults to `True`.
        zipped: bool or None. As in `keras.Model.save`.
        **kwargs: passed to `keras.Model.save`.

    Raises:
        FileExistsError: the file exists and `overwrite=False`.
        ValueError: the path does not end in `.keras`.

    Example:
    ```python
    fk.saving.save_model(ft, "animals.keras")
    ```
    """
    check_save_path(filepath, zipped=zipped)
    with atomic_path(filepath, directory=zipped is False, overwrite=overwrite) as temp:
        keras.Model.save(model, temp, overwrite=True, zipped=zipped, **kwargs)
    return None


def _is_remote(path):
    return "://" in os.fspath(path)


def save_weights(model, filepath, overwrite=True, max_shard_size=None):
    """Saves the weights of `model` to a `.weights.h5` file atomically.

    Args:
        model: keras.Model.
        filepath: str. A `.weights.h5` file.
        overwrite: bool. Replace an existing file. With `False`, an existing
            file raises `FileExistsError`. Defaults to `True`.
        max_shard_size: float or None. Sharded saving (several files and a
            `.weights.json` index) is left to Keras and is not atomic.

    Raises:
        FileExistsError: the file exists and `overwrite=False`.
        ValueError: the path does not end in `.weights.h5`.

    Example:
    ```python
    fk.saving.save_weights(ft, "animals.weights.h5")
    ```
    """
    if max_shard_size is not None:
        refuse_overwrite(filepath, overwrite)
        return keras.Model.save_weights(  # Keras writes the shards itself
            model, filepath, overwrite=True, max_shard_size=max_shard_size
        )
    check_save_path(filepath, weights=True)
    with atomic_path(filepath, overwrite=overwrite) as temp:
        keras.Model.save_weights(model, temp, overwrite=True)
    return None
