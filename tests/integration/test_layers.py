"""The house rules (docs/ARCHITECTURE.md, "Layers"), enforced by the suite:

- import-linter's contracts in pyproject.toml ([tool.importlinter]): the layers point one way and no
  package has an import cycle between its modules — function-level imports included;
- the top-level module ``app`` (app.py, the Dash app) is a layer of that contract; import-linter scans
  packages only, so it sees imports *of* app (nothing below may import it) and this file checks app.py's
  own imports (nothing above it);
- no code edits ``sys.path`` (the project is a package: ``pip install -e .``);
- pyproject.toml ships every package and the files the app reads at run time, and an installed copy
  (the wheel `pip install .` installs) serves the assets from where it put them."""
from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_import_contracts_layers_and_no_cycles():
    pytest.importorskip("importlinter", reason="import-linter is pinned in requirements.txt: "
                                              "pip install -r requirements.txt (scripts/setup.sh does)")
    ids = {c["id"] for c in PYPROJECT["tool"]["importlinter"]["contracts"]}
    assert {"layers", "acyclic"} <= ids
    # run from the root, as `lint-imports` would be: the packages are importable from there
    p = subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
                                              "sys.exit(lint_imports_command())",
                        "--config", "pyproject.toml", "--no-cache"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    report = p.stdout + p.stderr
    assert p.returncode == 0, report[-6000:]
    assert "0 broken" in report and "Contracts: 2 kept" in report, report[-3000:]


def _imported_names(path: Path) -> set[str]:
    """Every module ``path`` imports, at any level (function-level imports included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_app_module_imports_only_below_it():
    layers = next(c for c in PYPROJECT["tool"]["importlinter"]["contracts"] if c["id"] == "layers")["layers"]
    assert "app" in layers, "app.py is a layer of the layers contract"
    assert "app" not in PYPROJECT["tool"]["importlinter"]["root_packages"]  # a module: seen as an external node
    assert PYPROJECT["tool"]["importlinter"]["include_external_packages"] is True  # ... which needs this
    above = {m.strip() for layer in layers[:layers.index("app")] for m in re.split(r"[:|]", layer)}
    imported = _imported_names(ROOT / "app.py")
    upward = sorted(n for n in imported for m in above if n == m or n.startswith(m + "."))
    assert not upward, f"app.py imports a layer above it: {upward}"
    # the check sees app.py's imports at all: it builds the app from the layers below
    assert {"callbacks", "layouts.main", "attention_atlas.serving"} <= imported


def _project_python_files():
    out = subprocess.run(["git", "ls-files", "*.py", "*.ipynb"], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:  # not a git checkout (an unpacked archive): every file on disk
        return [p for p in ROOT.rglob("*.py") if ".venv" not in p.parts]
    return [ROOT / f for f in out.stdout.split()]


def test_no_sys_path_edits():
    edit = re.compile(r"sys\.path(\.(insert|append|extend|remove)\(|\s*(\[[^\]]*\])?\s*[+]?=)")
    offenders = [f"{path.relative_to(ROOT)}:{n}" for path in _project_python_files()
                 if path.is_file() and path.name != "test_layers.py"
                 for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
                 if edit.search(line)]
    assert not offenders, f"sys.path edited (install the project instead: pip install -e .): {offenders}"


def test_pyproject_ships_every_package_and_the_runtime_files():
    tool = PYPROJECT["tool"]["setuptools"]
    mapped = tool.get("package-dir", {})  # data-only packages whose files live elsewhere in the checkout
    listed = set(tool["packages"]) - set(mapped)
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in ROOT.glob("**/__init__.py")
               if not {".venv", "tests", "bench", "build"} & set(p.relative_to(ROOT).parts)}
    assert on_disk == listed, f"pyproject.toml [tool.setuptools] packages: missing {on_disk - listed}, " \
                              f"gone {listed - on_disk}"
    # the Dash app and its assets stay at the top of the repository (the design's layout)
    assert tool["py-modules"] == ["app"] and (ROOT / "app.py").is_file()
    assert not (ROOT / "attention_atlas" / "app.py").exists() and not (ROOT / "attention_atlas" / "assets").exists()
    assert mapped == {"attention_atlas.assets": "assets"} and "attention_atlas.assets" in tool["packages"]
    data = tool["package-data"]
    assert data["attention_atlas.assets"] == ["*"]
    assert {"style.css", "matrix_overlay.js", "preview.js"} <= {p.name for p in (ROOT / "assets").iterdir()}
    assert "data/*" in data["precompute"] and (ROOT / "precompute" / "data" / "demo_corpus.txt").exists()
    assert PYPROJECT["project"]["scripts"]["atlas"] == "attention_atlas.cli:main"


def test_installed_copy_serves_the_assets(tmp_path):
    """`pip install .` (here: the wheel it would install, built offline from the tracked files and
    unpacked) holds app.py as the top-level module ``app`` and the assets as attention_atlas/assets;
    the installed app finds them there, serves them, and names them in the page."""
    import shutil
    import zipfile

    pytest.importorskip("setuptools", minversion="70.1", reason="the build backend (pinned in requirements.txt)")

    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if files.returncode != 0:
        pytest.skip("not a git checkout")
    src = tmp_path / "src"
    for name in files.stdout.splitlines():
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                        "-q", "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "app.py" in names and "attention_atlas/app.py" not in names
    shipped = {n.split("/")[-1] for n in names if n.startswith("attention_atlas/assets/")}
    assert shipped == {p.name for p in (ROOT / "assets").iterdir() if p.is_file()}
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    (tmp_path / "store").mkdir()
    code = f"""
import json, app
from precompute.store import Store
Store({str(tmp_path / 'store')!r}).close()
client = app.create_app({str(tmp_path / 'store')!r}).server.test_client()
css, page = client.get("/assets/style.css"), client.get("/")
print(json.dumps({{"app": app.__file__, "assets": str(app.assets_folder()), "css": css.status_code,
                  "css_bytes": len(css.data), "page": page.get_data(as_text=True)}}))
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("ATLAS_")}
    env["PYTHONPATH"] = str(site)  # the unpacked wheel first: the checkout is not on the path (cwd elsewhere)
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["app"] == str(site / "app.py")
    assert out["assets"] == str(site / "attention_atlas" / "assets")
    assert out["css"] == 200 and out["css_bytes"] == (ROOT / "assets" / "style.css").stat().st_size
    assert "assets/matrix_overlay.js" in out["page"] and "assets/style.css" in out["page"]
