"""Callbacks of the export panel (placeholder until the feature lands)."""


def register(app, data):
    return None
