"""Warnings point at the user's line (finetunekit.core.notices.warn_user)."""

import warnings

import pytest

from finetunekit.core import notices
from finetunekit.core.notices import warn_user
from tests.test_seq2seq import pairs, seq2seq_tuner


def test_a_direct_call_reports_the_callers_line():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_user("suspicious, 3 rows", RuntimeWarning)
    assert caught[0].filename == __file__ and caught[0].category is RuntimeWarning


def test_library_frames_are_skipped(monkeypatch):
    """Frames in the library folders are passed over; here this test file plays the library."""
    monkeypatch.setattr(notices, "_LIBRARY_FOLDERS", notices._LIBRARY_FOLDERS + (__file__,))

    def library_function():
        warn_user("from inside")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        library_function()
    assert caught[0].filename != __file__  # pytest's own frame, the first outside "the library"


def test_a_warning_inside_fit_points_at_the_users_fit_call():
    ft = seq2seq_tuner(max_target_length=2, unfreeze="all")
    sources, targets = pairs(4)
    with pytest.warns(UserWarning, match=r"longer than max_target_length=2") as caught:
        ft.fit(sources, targets, epochs=1, batch_size=2, verbose=0)
    truncated = [w for w in caught if "max_target_length" in str(w.message)]
    assert truncated[0].filename == __file__
