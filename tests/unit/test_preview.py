"""The server-drawn picture of the Matrix View (first paint before plotly.js/WebGL)."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from figures.colors import discrete_scale
from figures.preview import colorscale_lut, rasterise


def test_discrete_colorscale_lut_gives_exact_colours():
    lut = colorscale_lut(discrete_scale(["#ff0000", "#00ff00", "#0000ff"]))
    assert tuple(lut[0]) == (255, 0, 0) and tuple(lut[1]) == (0, 255, 0) and tuple(lut[2]) == (0, 0, 255)
    assert tuple(lut[255]) == (0, 0, 255)


def test_rasterise_puts_points_where_the_plot_would():
    scale = discrete_scale(["#000000", "#ff0000"])
    # extent 100 × 50 units drawn into 101 × 51 px, dot 1: x → column, y up → row from the bottom
    img = rasterise(np.array([0, 100, 50]), np.array([0, 50, 25]), np.array([0, 1, 1]), scale, (100, 50),
                    (101, 51), alpha=1.0, dot=1)
    assert tuple(img[50, 0]) == (0, 0, 0)          # (0, 0): bottom-left, black
    assert tuple(img[0, 100]) == (255, 0, 0)       # (100, 50): top-right, red
    assert tuple(img[25, 50]) == (255, 0, 0)       # centre
    assert (img == 255).all(axis=2).sum() == 101 * 51 - 3  # nothing else painted


def test_alpha_blends_on_white():
    img = rasterise(np.array([0]), np.array([0]), np.array([0]), discrete_scale(["#000000"]), (1, 1), (2, 2),
                    alpha=0.5, dot=2)
    assert np.all(np.abs(img.astype(int) - 128) <= 1)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from app import create_app
    from tests.store_fixture import make_test_store
    d = tmp_path_factory.mktemp("prev")
    make_test_store(d / "store", n_layers=3, n_heads=4, n_inputs=6)
    empty = d / "empty"
    from precompute.store import Store
    Store(empty).close()
    return create_app(d / "store").server.test_client(), create_app(empty).server.test_client()


def test_route_draws_the_matrix_of_the_url(client):
    full, _ = client
    r = full.get("/_atlas/matrix-preview.png?proj=pca&color=position_mod5&w=640")
    assert r.status_code == 200 and r.mimetype == "image/png"
    img = Image.open(io.BytesIO(r.data))
    assert img.width == 640 and img.height > 200
    px = np.asarray(img.convert("RGB"))
    assert (px < 200).any(axis=2).sum() > 300  # points and labels, not a blank picture


@pytest.mark.parametrize("query", ["run=nope", "w=abc", "lod=-5&proj=<script>", "q=(&regex=1", "%ff%fe=1", "w=99999"])
def test_route_never_fails_on_odd_urls(client, query):
    full, _ = client
    r = full.get("/_atlas/matrix-preview.png?" + query)
    assert r.status_code in (200, 204)
    assert b"Traceback" not in r.data


def test_route_with_no_runs_is_empty(client):
    _, empty = client
    assert empty.get("/_atlas/matrix-preview.png").status_code == 204
