"""Shared by the bad-input catalogue files: each row must be documented in docs/errors.md."""

import os

ERRORS_MD = os.path.join(os.path.dirname(__file__), "..", "docs", "errors.md")


def undocumented(case_ids, section=None):
    """Case ids missing from docs/errors.md (from the `## section` heading on, if given)."""
    assert len(case_ids) == len(set(case_ids)), "duplicate case ids"
    with open(ERRORS_MD, encoding="utf-8") as f:
        text = f.read()
    if section is not None:
        heading = f"## {section}"
        assert heading in text, f"docs/errors.md has no section {heading!r}"
        text = text[text.index(heading):]
    return [i for i in case_ids if f"`{i}`" not in text]


def run_case(run, error, fragment, tmp_path):
    """Runs one catalogue row: `error=None` must work; any other error must be raised.

    A row that checks a warning turns it into an exception first (the
    saving and data rows' `as_error`).
    """
    import pytest

    if error is None:
        run(tmp_path)  # must work (rows may assert the conversion themselves)
        return
    if issubclass(error, Warning):  # legal but suspicious input: a warning with counts
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("error", error)  # the row's warning, raised where it is given
            with pytest.raises(error, match=fragment):
                run(tmp_path)
        return
    with pytest.raises(error, match=fragment):
        run(tmp_path)
