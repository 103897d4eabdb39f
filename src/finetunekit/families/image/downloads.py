"""Pretrained-weight downloads: a failed `weights="imagenet"` download says what to do offline."""

import os
import re
import socket
import urllib.error

#: How Keras' `get_file` words a failed download ("URL fetch failure on URL: code -- reason").
FETCH_FAILURE = re.compile(r"URL fetch failure on (\S+?):? ")


def is_download_failure(error):
    """True for the exception Keras' `get_file` raises when a download fails (no network, ...)."""
    return isinstance(error, (urllib.error.URLError, ConnectionError, socket.gaierror)) or bool(
        FETCH_FAILURE.search(str(error))
    )


def keras_models_folder():
    """The folder Keras caches downloaded application weights in (`$KERAS_HOME/models`).

    Keras uses `KERAS_HOME` when set, else `~/.keras` (or `/tmp/.keras` when
    the home folder is not writable).

    Returns:
        str.
    """
    home = os.environ.get("KERAS_HOME")
    if home is None:
        base = os.path.expanduser("~")
        home = os.path.join(base if os.access(base, os.W_OK) else "/tmp", ".keras")
    return os.path.join(home, "models")


def download_failure_error(error, architecture):
    """A `ConnectionError` saying how to get `architecture`'s ImageNet weights without a network.

    Args:
        error: the exception Keras raised for the failed download.
        architecture: str. The backbone's name (e.g. `"ResNet50"`).

    Returns:
        A `ConnectionError` naming the three ways out: no pretrained weights,
        a local weights file, or the file Keras expects in its cache folder.
    """
    match = FETCH_FAILURE.search(str(error))
    url = match.group(1) if match else None
    name = url.rsplit("/", 1)[-1] if url else None
    folder = keras_models_folder()
    cache = (
        f"(3) download {url} on a machine with a network and copy it, keeping the name "
        f"{name!r}, to {os.path.join(folder, name)!r}, where Keras looks for it first."
        if url else f"(3) copy the file Keras downloads into its cache folder {folder!r}."
    )
    return ConnectionError(
        f'Could not download the ImageNet weights of {architecture} (weights="imagenet"): '
        f"no network, or the download failed ({error}). Either (1) pass weights=None to start "
        f'from random weights; (2) pass weights="path/to/{architecture.lower()}.weights.h5", a '
        f"weights file saved from the same architecture (ft.backbone.save_weights(...) on a "
        f"machine that has them); or {cache}"
    )
