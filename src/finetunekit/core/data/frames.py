"""DataFrame columns shared by the image and text readers: named columns must exist, cells must be filled."""


def is_dataframe(value):
    """True for a pandas (or pandas-like) DataFrame, without importing pandas."""
    return type(value).__name__ == "DataFrame" and hasattr(value, "columns")


def check_column(df, column, role, keyword):
    """Raises when `column` is not a column of `df`, listing the columns there are.

    Args:
        df: a DataFrame.
        column: the column name asked for.
        role: str. What the column holds ("label", "path", "text").
        keyword: str. The argument that names it (`"y_col="`, ...).

    Raises:
        ValueError: naming the column and listing the DataFrame's columns.
    """
    columns = list(df.columns)
    if column not in columns:
        raise ValueError(
            f"No {role} column {column!r} in the DataFrame (columns: {columns}). Name one of "
            f"these columns with {keyword}."
        )


def find_column(df, column, names, role, keyword):
    """`column` if given (checked to exist), else the first column named as in `names`, or None.

    Args:
        df: a DataFrame.
        column: the column the user named, or None.
        names: tuple of str. Lower-case names to look for when `column` is None.
        role, keyword: as for `check_column`.

    Returns:
        A column name, or None when none is named as in `names`.
    """
    if column is not None:
        check_column(df, column, role, keyword)
        return column
    return next((c for c in df.columns if str(c).lower() in names), None)


def column_values(df, column, what):
    """The values of `df[column]` as a list, refusing missing (NaN/None) cells.

    Args:
        df: a DataFrame.
        column: a column of `df`.
        what: str. What a cell holds, for the message ("image path", "label").

    Returns:
        A list, one value per row.

    Raises:
        ValueError: naming the column and the rows (index labels) with no value.
    """
    values = df[column]
    missing = values.isna().to_numpy()
    if missing.any():
        rows = [_plain(r) for r in df.index[missing]]
        shown = ", ".join(map(repr, rows[:10])) + (", ..." if len(rows) > 10 else "")
        raise ValueError(
            f"{len(rows)} row(s) of the DataFrame have no {what} in column {column!r} (NaN "
            f"or None): rows [{shown}]. Drop them with df.dropna(subset=[{column!r}]) or fill "
            "them in."
        )
    return values.tolist()


def _plain(value):
    """A numpy scalar index label as a plain Python value (for readable messages)."""
    return value.item() if hasattr(value, "item") else value
