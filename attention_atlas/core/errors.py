"""Errors shared by the layers above the core.

``DataError``: a friendly, one-line problem with the data behind the current view. The store facade
(``dashboard_data.Data``, which re-exports it) turns every store problem into one; analysis code that
reads through ``Data`` catches it without importing the layer above."""
from __future__ import annotations


class DataError(Exception):
    """A friendly, one-line problem with the data behind the current view."""
