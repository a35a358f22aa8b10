"""Callbacks of the owninput panel (placeholder until the feature lands)."""


def register(app, data):
    return None
