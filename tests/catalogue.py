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
