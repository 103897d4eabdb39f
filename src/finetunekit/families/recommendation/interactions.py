"""Interactions (user, item, optional rating and timestamp): reading them and splitting them in time.

Recommendation data is a table of interactions, one row per (user, item)
event. `read_interactions` turns a DataFrame, a CSV/TSV file or a dict of
columns into a DataFrame with the standard columns `user`, `item` and, when
present, `rating` and `timestamp`; ids become strings (the form the
recommendation model looks them up in). `temporal_split` cuts it by time.
"""

import os

import numpy as np

from finetunekit.core.data.frames import is_dataframe

#: Standard column -> the names it is found under (case-insensitive), first match wins.
INTERACTION_COLUMNS = {
    "user": ("user", "user_id", "userid", "users", "customer_id"),
    "item": ("item", "item_id", "itemid", "items", "movie_id", "movieid", "product_id"),
    "rating": ("rating", "label", "click", "clicked", "score"),
    "timestamp": ("timestamp", "time", "ts", "date", "datetime"),
}


def _find(frame, wanted, given):
    if given is not None:
        if given not in frame.columns:
            raise ValueError(
                f"Column {given!r} is not in the interactions. Columns: {list(frame.columns)}"
            )
        return given
    lower = {str(c).lower().split(":")[0]: c for c in frame.columns}
    for name in INTERACTION_COLUMNS[wanted]:
        if name in lower:
            return lower[name]
    return None


def _read_file(path):
    import pandas as pd

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No such interactions file: {path!r}")
    sep = "\t" if path.lower().endswith((".tsv", ".inter")) else ","
    return pd.read_csv(path, sep=sep)


def as_id_strings(values):
    """Ids (ints, strings, a Series) as a numpy array of str; whole floats lose their `.0`.

    Raises:
        ValueError: missing, fractional or boolean ids, or a number and a
            string that would become the same id (`1` and `"1"`).
    """
    if hasattr(values, "to_numpy"):
        values = values.to_numpy()
    values = np.asarray(values)
    if values.dtype.kind == "b" or (
        values.dtype.kind == "O" and any(isinstance(v, (bool, np.bool_)) for v in values)
    ):
        raise ValueError(
            "Ids must be strings or whole numbers; found booleans (True/False would become "
            "two ids named 'True' and 'False'). Pass the real user or item ids."
        )
    if values.dtype.kind == "f":
        if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
            raise ValueError("Ids must be strings or whole numbers; found NaN or fractional ids.")
        values = values.astype("int64")
    if values.dtype.kind == "O":
        if any(v is None or v != v for v in values):
            raise ValueError("Ids must not be missing (None or NaN found among the ids).")
        _check_mixed_ids(values)
    return values.astype(str)


def _check_mixed_ids(values):
    """Raises when a number and a string in `values` have the same text (`1` and `"1"`)."""
    numbers = {str(v) for v in values if isinstance(v, (int, np.integer))}
    strings = {v for v in values if isinstance(v, str)}
    same = sorted(numbers & strings)
    if same:
        raise ValueError(
            f"Ids mix numbers and strings that name the same id ({len(same)} such, e.g. "
            f"{same[0]} and {same[0]!r}); they would be merged into one. Convert the column "
            "to one type first (e.g. frame['user'] = frame['user'].astype(str))."
        )


def read_interactions(
    source, user_col=None, item_col=None, rating_col=None, timestamp_col=None, require_item=True
):
    """Reads interactions into a DataFrame with columns `user`, `item` (, `rating`, `timestamp`).

    Columns are found by name (`user`/`user_id`/`userId`, `item`/`item_id`/
    `movie_id`, `rating`/`label`/`click`, `timestamp`/`time`/`date`) unless
    named. Ids are converted to strings.

    Args:
        source: a pandas DataFrame, a dict of columns, or the path of a CSV
            (TSV for `.tsv`/`.inter`) file.
        user_col, item_col, rating_col, timestamp_col: str or None. Column
            names, when they are not found by name.
        require_item: bool. Raise without an item column (a table of users
            only is accepted with `False`). Defaults to `True`.

    Returns:
        A new DataFrame (the source is not modified).

    Raises:
        ValueError: no user or item column, or no interactions.

    Example:
    ```python
    frame = fk.data.read_interactions("ratings.csv")   # userId,movieId,rating,timestamp
    frame.columns.tolist()                            # ['user', 'item', 'rating', 'timestamp']
    ```
    """
    import pandas as pd

    if isinstance(source, (str, os.PathLike)):
        source = _read_file(source)
    elif isinstance(source, dict):
        source = pd.DataFrame(source)
    if not is_dataframe(source):
        raise ValueError(
            "Interactions must be a DataFrame, a dict of columns or a CSV file with user and "
            f"item columns. Received: {type(source).__name__}"
        )
    found = {
        name: _find(source, name, given)
        for name, given in (("user", user_col), ("item", item_col),
                            ("rating", rating_col), ("timestamp", timestamp_col))
    }
    for required in ("user", "item") if require_item else ("user",):
        if found[required] is None:
            raise ValueError(
                f"The interactions have no {required} column. Columns: {list(source.columns)}. "
                f"Name it {required!r} or pass {required}_col=..."
            )
    if len(source) == 0:
        raise ValueError("No interactions: the table is empty.")
    frame = pd.DataFrame({"user": as_id_strings(source[found["user"]])})
    if found["item"] is not None:
        frame["item"] = as_id_strings(source[found["item"]])
    for name in ("rating", "timestamp"):
        if found[name] is not None:
            frame[name] = source[found[name]].to_numpy()
    return frame


def _comparable_times(column):
    """Timestamps as numbers or datetimes that sort in time order, or a clear error.

    Numbers and datetimes are kept; strings must be ISO 8601 dates
    (`2024-03-01`, `2024-03-01T10:00`): other date strings (`01/03/2024`)
    would sort as text, and day/month order cannot be guessed.
    """
    import pandas as pd

    missing = int(column.isna().sum())
    if missing:
        raise ValueError(
            f"{missing} of {len(column)} interactions have no timestamp; temporal_split cannot "
            "place them in time. Drop or fill those rows first."
        )
    if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_datetime64_any_dtype(column):
        return column
    kinds = {type(v).__name__ for v in column}
    if kinds != {"str"}:
        raise ValueError(
            f"Timestamps mix types ({', '.join(sorted(kinds))}); give numbers (e.g. Unix "
            "seconds), datetimes or ISO 8601 date strings only."
        )
    try:
        return pd.to_datetime(column, format="ISO8601")
    except (ValueError, TypeError):
        raise ValueError(
            f"Timestamps are strings that are not ISO 8601 dates (e.g. {column.iloc[0]!r}), "
            "which would sort as text. Convert them first, e.g. "
            "frame['timestamp'] = pd.to_datetime(frame['timestamp'], format='%d/%m/%Y')."
        ) from None


def temporal_split(interactions, fractions=None, cutoffs=None, timestamp_col=None):
    """Splits interactions by time: every interaction of a part happens after those of the part before.

    Args:
        interactions: anything `read_interactions` reads, with a timestamp column.
        fractions: sequence of floats summing to at most 1, e.g. `(0.8, 0.2)`
            or `(0.6, 0.2, 0.2)`: the share of interactions (in time order)
            of each part; a remainder becomes a last part. Defaults to `(0.8,)`.
        cutoffs: sequence of timestamps instead of `fractions`: part `i`
            holds interactions before `cutoffs[i]` (and at or after the one before).
        timestamp_col: str or None. The time column, when not found by name.

    Returns:
        A tuple of DataFrames (standard columns), in time order.

    Example:
    ```python
    pretrain, finetune, test = fk.data.temporal_split(ratings, fractions=(0.6, 0.2, 0.2))
    ```
    """
    frame = read_interactions(interactions, timestamp_col=timestamp_col)
    if "timestamp" not in frame:
        raise ValueError(
            "temporal_split needs a timestamp column (timestamp, time, ts or date); pass "
            "timestamp_col=... to name it."
        )
    frame["timestamp"] = _comparable_times(frame["timestamp"])
    frame = frame.sort_values("timestamp", kind="stable").reset_index(drop=True)
    times = frame["timestamp"].to_numpy()
    if cutoffs is not None:
        if fractions is not None:
            raise ValueError("Pass either fractions or cutoffs to temporal_split, not both.")
        edges = [0, *np.searchsorted(times, list(cutoffs), side="left"), len(frame)]
    else:
        fractions = (0.8,) if fractions is None else tuple(float(f) for f in fractions)
        if any(f <= 0 for f in fractions) or sum(fractions) > 1 + 1e-9:
            raise ValueError(
                "`fractions` must be positive and sum to at most 1. "
                f"Received: fractions={fractions}"
            )
        edges = [0, *(int(round(c * len(frame))) for c in np.cumsum(fractions)), len(frame)]
        if edges[-2] == len(frame):
            edges = edges[:-1]
    if any(b < a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"`cutoffs` must be increasing. Received: cutoffs={list(cutoffs)}")
    sizes = [b - a for a, b in zip(edges, edges[1:])]
    if cutoffs is None and 0 in sizes:
        raise ValueError(
            f"temporal_split with fractions={fractions} on {len(frame)} interactions gives an "
            f"empty part (sizes {sizes}); use larger fractions or more interactions."
        )
    return tuple(frame.iloc[a:b].reset_index(drop=True) for a, b in zip(edges, edges[1:]))
