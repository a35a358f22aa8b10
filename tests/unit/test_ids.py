"""Component ids are defined once (layouts/ids.py): every id there exists in the built page (or is
made by a callback: ids.DYNAMIC), no two components share an id, every id the browser scripts
(assets/*.js) look up exists, and every id a callback names is one of them."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from dash.development.base_component import Component

ROOT = Path(__file__).resolve().parents[2]


def _walk(c, out: list):
    if isinstance(c, (list, tuple)):
        for x in c:
            _walk(x, out)
        return
    if not isinstance(c, Component):
        return
    cid = getattr(c, "id", None)
    if cid is not None:
        out.append(cid)
    for prop in c._prop_names:
        v = getattr(c, prop, None)
        if isinstance(v, (Component, list, tuple)):
            _walk(v, out)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(the app made by the factory, every component id of its layout, in page order, with every
    analysis tab mounted: the page as it is once the user has opened each tab)."""
    import app as app_module
    from layouts.analysis import TABS, tab_panel
    a = app_module.create_app(tmp_path_factory.mktemp("store"))
    layout = a.layout() if callable(a.layout) else a.layout
    found = []
    _walk(layout, found)
    initial = set(found)
    for value, _, _ in TABS:
        tab = []
        _walk(tab_panel(value), tab)
        assert (set(tab) <= initial) == (value == "patterns"), f"tab {value}: mounted at first only if it is the default"
        if value != "patterns":
            found.extend(tab)
    return a, found


def _key(cid):
    return json.dumps(cid, sort_keys=True) if isinstance(cid, dict) else cid


def test_no_two_components_share_an_id(built):
    _, found = built
    keys = [_key(c) for c in found]
    assert len(found) > 150
    assert sorted({k for k in keys if keys.count(k) > 1}) == []


def test_every_id_of_the_ids_module_is_in_the_page(built):
    from layouts import ids
    _, found = built
    page = {c for c in found if isinstance(c, str)}
    declared = ids.all_ids()
    dynamic = set(ids.DYNAMIC)
    missing = {k: v for k, v in declared.items() if v not in page and v not in dynamic}
    assert missing == {}
    assert not dynamic & page, "a DYNAMIC id is in the initial layout: move it to its section"
    assert len(set(declared.values())) == len(declared), "two constants name the same id"
    # and the other way round: every id of the page has its constant
    assert page - set(declared.values()) == set()


def test_view_state_ids_are_the_field_tables():
    from figures.urlstate import FIELDS
    from layouts import ids
    declared = set(ids.all_ids().values())
    assert {f.component for f in FIELDS} <= declared
    assert ids.ANALYSIS_TABS == next(f.choices for f in FIELDS if f.key == "atab")


JS_ID = [re.compile(r"getElementById\(\s*[\"']([^\"']+)[\"']\s*\)"),
         re.compile(r"querySelector(?:All)?\(\s*[\"']#([A-Za-z][\w-]*)"),
         re.compile(r"\bgd\(\s*[\"']([^\"']+)[\"']\s*\)"),                    # matrix_overlay.js: gd(id)
         re.compile(r"Arrow\w+:\s*[\"']([^\"']+)[\"']")]                       # keys.js: key -> button id


def test_every_id_the_scripts_look_up_is_in_the_page(built):
    _, found = built
    page = {c for c in found if isinstance(c, str)}
    used = {}
    for js in sorted((ROOT / "assets").glob("*.js")):
        for rx in JS_ID:
            for m in rx.finditer(js.read_text()):
                used.setdefault(m.group(1), js.name)
    assert {"matrix-graph", "matrix-overlay", "msg-matrix", "image-graph", "next-head-btn"} <= set(used)
    from layouts import ids
    # ids a callback creates inside its output (e.g. the patterns table the highlight script finds)
    assert {i: f for i, f in used.items() if i not in page and i not in ids.DYNAMIC} == {}


def test_every_callback_names_ids_of_the_page(built):
    """Inputs, outputs and states of every callback the page is served (app and module-level
    clientside ones): ids of the page, made by a callback, or pattern-matching ids of a declared type."""
    from layouts import ids
    a, found = built
    page = {c for c in found if isinstance(c, str)} | set(ids.DYNAMIC)
    types = set(ids.PATTERN_TYPES)
    client = a.server.test_client()
    client.get("/")
    deps = client.get("/_dash-dependencies").get_json()
    assert len(deps) > 40

    def ok(cid) -> bool:
        if isinstance(cid, dict) or str(cid).startswith("{"):
            d = cid if isinstance(cid, dict) else json.loads(cid)
            return d.get("type") in types
        return cid in page
    bad = set()
    for d in deps:
        for dep in list(d.get("inputs") or []) + list(d.get("state") or []):
            if not ok(dep["id"]):
                bad.add(str(dep["id"]))
        for part in d["output"].strip(".").split("..."):
            cid = part.rsplit(".", 1)[0]
            if cid and not ok(cid):
                bad.add(cid)
    assert bad == set()


def test_a_misspelt_id_fails_at_import_time():
    from layouts import ids
    with pytest.raises(AttributeError):
        ids.MATRIX_GRAPHH  # noqa: B018
