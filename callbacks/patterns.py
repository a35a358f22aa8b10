"""Callbacks of the patterns panel (placeholder until the feature lands)."""


def register(app, data):
    return None
