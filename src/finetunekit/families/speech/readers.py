"""Audio readers: class folders, file lists, CSV/JSONL manifests and arrays of waveforms.

Every reader returns clips as float32 arrays of shape `(samples, channels)`
with one sample rate per clip; WAV files are decoded with TensorFlow
(`tf.audio.decode_wav`), FLAC files with `soundfile` when it is installed.
"""

import json
import os

import numpy as np

from finetunekit.core.notices import warn_user

AUDIO_EXTENSIONS = (".wav", ".flac")
PATH_COLUMNS = ("path", "audio", "file", "filename")
TARGET_COLUMNS = ("text", "transcript", "sentence", "label")


def read_audio(path):
    """Decodes one WAV or FLAC file.

    Args:
        path: str. A `.wav` or `.flac` file.

    Returns:
        `(clip, sample_rate)`: float32 `(samples, channels)` in [-1, 1] and an int.

    Raises:
        ValueError: the file is missing, not WAV/FLAC, or cannot be decoded.

    Example:
    ```python
    clip, rate = read_audio("speech/yes/0001.wav")
    ```
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"Audio file not found: {path!r}.")
    extension = os.path.splitext(path)[1].lower()
    if extension not in AUDIO_EXTENSIONS:
        raise ValueError(
            f"Unsupported audio file {path!r}: expected {', '.join(AUDIO_EXTENSIONS)} files. "
            "Convert it first (e.g. `sox in.mp3 out.wav`)."
        )
    if extension == ".flac":
        return _read_flac(path)
    import tensorflow as tf

    try:
        with open(path, "rb") as f:
            audio, rate = tf.audio.decode_wav(f.read())
    except (tf.errors.InvalidArgumentError, tf.errors.OpError) as error:
        raise ValueError(
            f"Cannot decode the audio file {path!r}: not a valid 16-bit PCM WAV file "
            f"({error.message.splitlines()[0]}). Re-encode it, e.g. `sox in.wav -b 16 out.wav`."
        ) from None
    return audio.numpy().astype("float32"), check_file_rate(int(rate), path)


#: Sample rates a real recording has, in Hz (telephone 8 kHz up to studio 384 kHz).
PLAUSIBLE_RATES = (1000, 384000)


def check_file_rate(rate, path):
    """`rate`, or a clear error when a file's header gives an impossible sample rate."""
    low, high = PLAUSIBLE_RATES
    if not low <= rate <= high:
        raise ValueError(
            f"The audio file {path!r} says its sample rate is {rate} Hz, which no recording has "
            f"({low}-{high} Hz); the header is damaged. Re-encode it, e.g. "
            "`sox in.wav -r 16000 out.wav`."
        )
    return rate


def _read_flac(path):
    try:
        import soundfile
    except ImportError:
        raise ValueError(
            f"Reading FLAC ({path!r}) needs the `soundfile` package: pip install soundfile "
            "(or convert the files to WAV: `sox in.flac out.wav`)."
        ) from None
    try:
        audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except RuntimeError as error:
        raise ValueError(f"Cannot decode the audio file {path!r}: {error}") from None
    return audio, check_file_rate(int(rate), path)


def folder_files(folder):
    """`(paths, labels, class_names)` of a folder with one sub-folder of audio files per class."""
    classes = sorted(
        name for name in os.listdir(folder) if os.path.isdir(os.path.join(folder, name))
    )
    paths, labels = [], []
    for name in classes:
        for root, _, files in sorted(os.walk(os.path.join(folder, name))):
            for file in sorted(files):
                if file.lower().endswith(AUDIO_EXTENSIONS):
                    paths.append(os.path.join(root, file))
                    labels.append(name)
    if not paths:
        raise ValueError(
            f"No .wav or .flac files found in the class sub-folders of {folder!r}. Expected "
            f"{folder}/<label>/<clip>.wav. Sub-folders found: {classes}."
        )
    return paths, labels, [name for name in classes if name in set(labels)]


def read_manifest(path, x_col=None, y_col=None):
    """`(paths, targets)` of a CSV or JSONL manifest of `(path, text or label)` rows.

    Relative paths are relative to the manifest's folder.
    """
    import pandas as pd

    if path.lower().endswith((".jsonl", ".json")):
        with open(path, encoding="utf-8") as f:
            frame = pd.DataFrame([json.loads(line) for line in f if line.strip()])
    else:
        frame = pd.read_csv(path, keep_default_na=False)
    x_col = x_col or _column(frame, PATH_COLUMNS, path, "audio path")
    y_col = y_col or _column(frame, TARGET_COLUMNS, path, "text or label", required=False)
    for column in (x_col, y_col):
        if column is not None and column not in frame.columns:
            raise ValueError(
                f"The manifest {path!r} has no column {column!r}; its columns are "
                f"{list(frame.columns)}."
            )
    base = os.path.dirname(os.path.abspath(path))
    paths = [p if os.path.isabs(p) else os.path.join(base, p) for p in frame[x_col].astype(str)]
    return paths, (None if y_col is None else frame[y_col].tolist())


def _column(frame, names, path, what, required=True):
    for name in names:
        if name in frame.columns:
            return name
    if not required:
        return None
    raise ValueError(
        f"The manifest {path!r} has no {what} column: name one of {list(names)} or pass "
        f"x_col=... . Its columns are {list(frame.columns)}."
    )


def _as_clip(value, index):
    clip = np.asarray(value)
    if clip.dtype.kind not in "iuf" or clip.ndim not in (1, 2):
        raise ValueError(
            "Waveforms must be numbers of shape (samples,) or (samples, channels). "
            f"Example {index} has dtype {clip.dtype} and shape {clip.shape}."
        )
    if clip.ndim == 2 and clip.shape[1] > clip.shape[0]:
        raise ValueError(
            f"Example {index} has shape {clip.shape}: more channels than samples, so it is "
            f"laid out (channels, samples). Waveforms are (samples, channels): pass clip.T."
        )
    if clip.dtype.kind == "u":  # unsigned PCM (8-bit WAV) is centred on half its range
        middle = (float(np.iinfo(clip.dtype).max) + 1) / 2
        clip = (clip.astype("float64") - middle) / middle
    elif clip.dtype.kind == "i":  # signed PCM integers -> [-1, 1]
        clip = clip / float(np.iinfo(clip.dtype).max)
    elif clip.size and float(np.nanmax(np.abs(clip))) > 2.0:
        raise ValueError(
            f"Example {index} is a float waveform peaking at {float(np.nanmax(np.abs(clip))):g}; "
            "float waveforms are in [-1, 1]. For 16-bit PCM values stored as floats pass "
            "clip / 32768 (or clip.astype('int16'))."
        )
    return (clip[:, None] if clip.ndim == 1 else clip).astype("float32")


def warn_quiet_integer_clips(items):
    """Warns with counts about wide-integer clips whose values fit 16 bits (PCM in a wider array)."""
    quiet = [i for i, item in enumerate(items)
             if isinstance(item, np.ndarray) and item.dtype in (np.int32, np.int64) and item.size
             and 1 < int(np.abs(item).max()) <= 32768]
    if quiet:
        warn_user(
            f"{len(quiet)} of {len(items)} waveform(s) are {items[quiet[0]].dtype} arrays whose "
            f"values fit in 16 bits (e.g. example {quiet[0]}); they are scaled by the "
            f"{items[quiet[0]].dtype} range and become near-silence. If they are 16-bit PCM, "
            "pass clip.astype('int16')."
        )


def audio_sources(x, y=None, sample_rate=None, x_col=None, y_col=None):
    """Reads any supported audio input.

    Args:
        x: a class folder, a CSV/JSONL manifest, a list of audio paths, a
            `(n, samples)` / `(n, samples, channels)` array or a list of 1-D or
            2-D waveforms.
        y: targets (labels or transcripts), or None.
        sample_rate: int. Rate of array waveforms (required for them).
        x_col, y_col: manifest columns.

    Returns:
        `(clips, rates, targets, folder_classes)`.
    """
    folder_classes = None
    if isinstance(x, (str, os.PathLike)):
        x = os.fspath(x)
        if os.path.isdir(x):
            x, folder_y, folder_classes = folder_files(x)
            y = folder_y if y is None else y
        elif x.lower().endswith((".csv", ".jsonl", ".json")):
            x, manifest_y = read_manifest(x, x_col, y_col)
            y = manifest_y if y is None else y
        else:
            x = [x]
    items = list(x) if not isinstance(x, np.ndarray) else x
    if len(items) and all(isinstance(item, (str, os.PathLike)) for item in items):
        decoded = [read_audio(path) for path in items]
        rates = [r for _, r in decoded]
        if sample_rate is not None and any(r != sample_rate for r in rates):
            raise ValueError(
                f"sample_rate={sample_rate!r} is for waveform arrays; audio files carry their own "
                f"rate (here {sorted(set(rates))} Hz) and are resampled as needed. Drop sample_rate=."
            )
        return [c for c, _ in decoded], rates, y, folder_classes
    if sample_rate is None:
        raise ValueError(
            "Waveform arrays need their sample rate: pass sample_rate=16000 (the rate of the "
            "clips in Hz) to fit / predict / evaluate."
        )
    if (isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer))
            or not PLAUSIBLE_RATES[0] <= sample_rate <= PLAUSIBLE_RATES[1]):
        raise ValueError(
            f"`sample_rate` must be an int in Hz (e.g. 16000), from {PLAUSIBLE_RATES[0]} to "
            f"{PLAUSIBLE_RATES[1]}. Received: sample_rate={sample_rate!r}"
        )
    if isinstance(items, np.ndarray) and items.ndim >= 2:
        items = list(items)
    warn_quiet_integer_clips(items)
    clips = [_as_clip(item, i) for i, item in enumerate(items)]
    return clips, [int(sample_rate)] * len(clips), y, folder_classes
