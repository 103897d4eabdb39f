"""Text readers: strings, lists, DataFrames, CSV/TSV/JSONL/JSON/Parquet files, class folders, CoNLL."""

import math
import os

import numpy as np

from finetunekit.core.data.constants import IMAGE_EXTENSIONS, LABEL_COLUMNS
from finetunekit.core.data.frames import column_values, find_column, is_dataframe

TEXT_COLUMNS = (
    "text", "texts", "sentence", "sentences", "review", "content", "document", "tokens", "words",
)
TEXT_FILE_TYPES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")


def read_table(path):
    """Reads a CSV/TSV/JSONL/JSON/Parquet file with pandas."""
    import pandas as pd

    path = os.fspath(path)
    lower = path.lower()
    if lower.endswith(".csv"):
        return pd.read_csv(path, encoding_errors="replace")
    if lower.endswith(".tsv"):
        return pd.read_csv(path, sep="\t", encoding_errors="replace")
    if lower.endswith((".jsonl", ".json")):
        try:
            return pd.read_json(path, lines=lower.endswith(".jsonl"), encoding_errors="replace")
        except TypeError:  # pragma: no cover - old pandas
            return pd.read_json(path, lines=lower.endswith(".jsonl"))
    if lower.endswith(".parquet"):
        return pd.read_parquet(path)
    raise ValueError(
        f"Unknown text file type: {path!r}. Expected one of {', '.join(TEXT_FILE_TYPES)}, "
        "or a folder with one sub-folder of .txt files per class."
    )


def text_columns(df, x_col=None, y_col=None):
    """Finds the text and label columns of a DataFrame.

    Returns:
        `(x_col, y_col)`; `y_col` is None when there is no label column.
    """
    columns = list(df.columns)
    x_col = find_column(df, x_col, TEXT_COLUMNS, "text", "x_col=")
    y_col = find_column(df, y_col, LABEL_COLUMNS, "label", "y_col= (or y=)")
    if x_col is None:  # no named text column: the one column that is not the label
        rest = [c for c in columns if c != y_col]
        if len(rest) == 1:
            x_col = rest[0]
    if x_col not in columns:
        raise ValueError(
            f"Cannot find the text column of the DataFrame (columns: {columns}). "
            f"Name it one of {TEXT_COLUMNS} or pass x_col=..."
        )
    return x_col, y_col


def read_text_folder(directory):
    """Reads a folder of class sub-folders with `keras.utils.text_dataset_from_directory`.

    Returns:
        `(texts, labels, class_names)`: bytes texts, int labels, sorted
        sub-folder names.
    """
    import keras

    ds = keras.utils.text_dataset_from_directory(
        os.fspath(directory), batch_size=None, shuffle=False, label_mode="int"
    )
    texts, labels = [], []
    for text, label in ds.as_numpy_iterator():
        texts.append(bytes(text))
        labels.append(int(label))
    return texts, np.asarray(labels, dtype="int32"), list(ds.class_names)


def text_sources(x, y=None, x_col=None, y_col=None):
    """Normalises user text input.

    Args:
        x: a string, a list/array/Series of strings (or, for token
            classification, of word lists), a DataFrame, the path of a CSV /
            TSV / JSONL / JSON / Parquet file, or a folder of class sub-folders.
        y: labels, or a label column name for tables.
        x_col, y_col: column names of a table (auto-detected otherwise).

    Returns:
        `(texts, labels, class_names)`: a list of texts (bytes or word lists),
        labels or None, and class names from a folder or None.
    """
    if isinstance(x, (str, os.PathLike)) and os.path.isdir(x):
        if y is not None:
            raise ValueError(
                "Labels come from the class sub-folders of a folder; do not pass y with a folder."
            )
        return read_text_folder(x)
    if isinstance(x, (str, os.PathLike)) and os.fspath(x).lower().endswith(TEXT_FILE_TYPES):
        if not os.path.exists(x):
            raise FileNotFoundError(f"No such text file: {os.fspath(x)!r}")
        x = read_table(x)
    if is_dataframe(x):
        if isinstance(y, str):
            y_col, y = y, None
        x_col, y_col = text_columns(x, x_col, y_col)
        labels = column_values(x, y_col, "label") if (y is None and y_col is not None) else y
        return check_text_items(column_values(x, x_col, "text")), labels, None
    if isinstance(x, (str, bytes)):
        return check_text_items([x]), y, None
    _check_not_numeric(x)
    if hasattr(x, "tolist") and not isinstance(x, list):
        x = x.tolist()
    if not isinstance(x, (list, tuple)):
        raise ValueError(
            "Text input must be a string, a list of strings, a DataFrame, a CSV/JSONL file or a "
            f"folder of class sub-folders. Received: {type(x).__name__}"
        )
    return check_text_items(list(x)), y, None


USE_AN_IMAGE_BACKBONE = 'for images use an image backbone, e.g. FineTuner("resnet50", ...)'


def _check_not_numeric(x):
    """Refuses numeric arrays of rank >= 2 (images, features): they are not texts."""
    shape = getattr(x, "shape", None)
    if shape is not None and len(shape) >= 2 and _is_numeric_array(x):
        raise ValueError(
            "This is a text model: x must be texts (strings), a DataFrame, a CSV/JSONL file "
            f"or a folder; received a numeric array of shape {tuple(shape)}. Pass texts; "
            f"{USE_AN_IMAGE_BACKBONE}."
        )


def _positions(indices):
    return "[" + ", ".join(map(str, indices[:10])) + (", ..." if len(indices) > 10 else "") + "]"


def check_text_items(items):
    """Refuses items a text model would silently read as words.

    None and NaN would become the texts "None" and "nan"; image arrays and
    existing image files would become their printed values or file names.

    Args:
        items: list of texts (str or bytes) or word lists.

    Returns:
        `items`, unchanged.

    Raises:
        ValueError: naming the positions of the bad items and the fix.
    """
    missing = [i for i, t in enumerate(items) if t is None or _is_nan(t)]
    if missing:
        raise ValueError(
            f"Texts at positions {_positions(missing)} are None or NaN ({len(missing)} of "
            f"{len(items)}); a text model would read them as the words 'None' or 'nan'. Drop "
            'them, or replace them with "" (an empty text).'
        )
    arrays = [i for i, t in enumerate(items) if _is_numeric_array(t)]
    if arrays:
        raise ValueError(
            f"This is a text model, but the items at positions {_positions(arrays)} are numeric "
            f"arrays (of shape {tuple(np.shape(items[arrays[0]]))}), not texts. Pass texts; "
            f"{USE_AN_IMAGE_BACKBONE}."
        )
    images = [i for i, t in enumerate(items) if _is_image_file(t)]
    if images:
        names = ", ".join(repr(os.fspath(items[i])) for i in images[:3])
        raise ValueError(
            f"This is a text model, but x holds paths of image files ({names}"
            f"{', ...' if len(images) > 3 else ''}; positions {_positions(images)}). Pass "
            f"texts; {USE_AN_IMAGE_BACKBONE}."
        )
    return items


def _is_numeric_array(value):
    """True for a numeric array of rank >= 1 (not for a numeric scalar)."""
    kind = getattr(getattr(value, "dtype", None), "kind", "O")
    return kind in "iufcb" and getattr(value, "ndim", 0) >= 1


def _is_nan(value):
    return isinstance(value, (float, np.floating)) and math.isnan(value)


def _is_image_file(value):
    if not isinstance(value, (str, os.PathLike)):
        return False
    name = os.fspath(value)
    return name.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(name)


def as_words(sentence):
    """A sentence as a list of words: lists stay, strings split on whitespace."""
    if isinstance(sentence, bytes):
        sentence = sentence.decode("utf-8", errors="replace")
    if isinstance(sentence, str):
        return sentence.split()
    return list(sentence)



def read_conll(path, word_column=0, tag_column=-1):
    """Reads a CoNLL-style file: one `word ... tag` line per token, blank lines between sentences.

    Returns:
        `(sentences, tags)`: lists of word lists and tag lists.
    """
    sentences, tags, words, labels = [], [], [], []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            line = line.strip()
            if not line or line.startswith("-DOCSTART-"):
                if words:
                    sentences.append(words)
                    tags.append(labels)
                words, labels = [], []
                continue
            parts = line.split()
            words.append(parts[word_column])
            labels.append(parts[tag_column])
    if words:
        sentences.append(words)
        tags.append(labels)
    return sentences, tags
