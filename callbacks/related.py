"""Callbacks of the related panel (placeholder until the feature lands)."""


def register(app, data):
    return None
