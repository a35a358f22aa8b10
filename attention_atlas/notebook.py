"""Attention Atlas in a Jupyter notebook.

    from attention_atlas.notebook import build_store, show
    run_id = build_store("cache/nb", model="minilm", sentences=[...], layers="0,5")
    atlas = show("cache/nb", mode="inline")        # the whole app in the output cell
    atlas.url, atlas.data                          # the server's address, dashboard_data.Data
    atlas.stop()

``show`` runs the same app as ``atlas serve`` through Dash's ``jupyter_mode``: "inline" (an
iframe in the cell), "external" (a link), "tab" (opens a browser tab) or "jupyterlab" (needs
the jupyterlab-dash extension). The server runs in a thread of the kernel on 127.0.0.1.
Everything is offline: the app serves plotly.js itself."""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

MODES = ("inline", "external", "tab", "jupyterlab")

DEMO_SENTENCES = [
    "The cat sat on the mat because it was tired.",
    "Where is the station, and when does the train leave?",
    "She said yes to the offer, then changed her mind.",
    "One, two, three: the list goes on.",
    "The trophy did not fit in the suitcase because it was too big.",
]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class AtlasServer:
    """A running app: ``url`` to open, ``app`` (dash.Dash), ``context`` (its AppContext),
    ``data`` (dashboard_data.Data)."""
    app: object
    context: object
    host: str
    port: int
    mode: str

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    @property
    def data(self):
        return self.context.data

    def stop(self) -> None:
        from dash._jupyter import jupyter_dash
        srv = jupyter_dash._servers.pop((self.host, self.port), None)  # noqa: SLF001 - Dash keeps it there
        if srv is not None:
            srv.shutdown()

    def __repr__(self) -> str:
        return f"AtlasServer({self.url}, mode={self.mode!r})"


def show(cache_dir: str | os.PathLike, mode: str = "inline", port: int | None = None, host: str = "127.0.0.1",
         height: int = 900, width: str = "100%") -> AtlasServer:
    """Serve the dashboard on the store at ``cache_dir`` and display it in the notebook."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if not (Path(cache_dir).expanduser() / "cache.db").exists():
        raise FileNotFoundError(f"no Attention Atlas store at {cache_dir}: build one with build_store(...) "
                                "or `python -m precompute run ... --cache DIR`")
    from app import build_app
    # shown in the notebook's iframe: no frame-ancestors/X-Frame-Options refusal
    app, context = build_app(cache_dir, embeddable=True)
    port = int(port or free_port(host))
    app.run(jupyter_mode=mode, host=host, port=port, jupyter_height=height, jupyter_width=width, debug=False)
    return AtlasServer(app, context, host, port, mode)


def build_store(cache_dir: str | os.PathLike, model: str = "minilm", sentences: list[str] | None = None,
                layers: str | None = "0,5", projections: str = "pca", dims: str = "2", workers: int = 1,
                **config) -> str:
    """Run the real precompute pipeline on a small corpus (offline, packaged model) and return the
    run id. Resumable: calling it again with the same arguments finishes in seconds."""
    from precompute.pipeline import RunConfig, run
    cache_dir = Path(cache_dir).expanduser()
    cache_dir.mkdir(parents=True, exist_ok=True)
    corpus = config.pop("corpus", None)
    if corpus is None:
        corpus = cache_dir / "notebook-corpus.txt"
        corpus.write_text("\n".join(sentences or DEMO_SENTENCES), encoding="utf-8")
    summary = run(RunConfig(model=model, corpus=str(corpus), cache=str(cache_dir), layers=layers,
                            projections=projections, dims=dims, variants=config.pop("variants", "translated"),
                            workers=workers, **config))
    return summary.run_id
