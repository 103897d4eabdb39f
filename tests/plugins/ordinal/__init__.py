"""Ordinal regression as a plugin family: one folder, one registration line (in `plugin.py`)."""
