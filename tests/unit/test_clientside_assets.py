"""The clientside callbacks' JavaScript lives in assets/ (window.dash_clientside.<namespace>.<name>),
not in Python strings: every ClientsideFunction the app registers is defined by an asset file, and
no callback module hands clientside_callback a string."""
from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.store_fixture import make_test_store

ROOT = Path(__file__).resolve().parents[2]


def test_every_clientside_function_is_defined_in_assets(tmp_path):
    from app import assets_folder, create_app

    make_test_store(tmp_path, "text", n_layers=1, n_heads=2, n_inputs=2, run_id="text-run")
    app = create_app(tmp_path)
    with app.server.test_client() as client:
        deps = client.get("/_dash-dependencies").get_json()
    wanted = {(d["clientside_function"]["namespace"], d["clientside_function"]["function_name"])
              for d in deps if d.get("clientside_function")}
    assert len(wanted) >= 9
    defined = set()
    for js in Path(assets_folder()).glob("*.js"):
        text = js.read_text(encoding="utf-8")
        namespaces = re.findall(r"^window\.dash_clientside\.(\w+) = Object\.assign\(", text, re.M)
        if len(namespaces) == 1:  # one namespace per file: its functions are the object's members
            defined |= {(namespaces[0], name) for name in re.findall(r"^    (\w+): function\(", text, re.M)}
    assert wanted <= defined, sorted(wanted - defined)
    assert not app._inline_scripts  # nothing registered as a JavaScript string


def test_no_javascript_in_python_strings():
    for path in sorted((ROOT / "callbacks").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == \
                    "clientside_callback":
                first = node.args[0]
                assert isinstance(first, ast.Call) and getattr(first.func, "id", None) == "ClientsideFunction", \
                    f"{path.name}:{node.lineno}: clientside_callback takes a ClientsideFunction (JavaScript in assets/)"
