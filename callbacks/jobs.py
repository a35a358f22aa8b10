"""Callbacks of the jobs panel (placeholder until the feature lands)."""


def register(app, data):
    return None
