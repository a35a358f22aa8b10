"""Thin Dash callbacks: read controls, fetch data through dashboard_data, build figures."""


def register_all(app, data):
    from . import detail, matrix, single, state
    state.register(app, data)
    matrix.register(app, data)
    single.register(app, data)
    detail.register(app, data)
