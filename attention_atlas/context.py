"""The application context: what the dashboard's parts share, built once by ``app.build_app`` and
handed to every feature's ``register(app, context)`` (callbacks/__init__.register_all).

Nothing is stored on the Dash app: a feature reads the settings, the store facade, the sign-in
object and the cache regions from here, never through attributes of ``app``. Whoever builds the app
gets its context back from ``build_app`` (the notebook and the tests do); ``create_app`` returns the
app alone, for the entry points that only serve it (wsgi, ``atlas serve``)."""
from __future__ import annotations

from dataclasses import dataclass

from attention_atlas.core.caches import Caches
from attention_atlas.dashboard_data import Data
from attention_atlas.settings import Settings


@dataclass(frozen=True)
class AppContext:
    settings: Settings
    data: Data                       # the store facade (cached reads, Matrix View data)
    auth: object | None = None       # attention_atlas.teamauth.TeamAuth when sign-in is on, else None
    watchdog: object | None = None   # attention_atlas.serving.RequestWatchdog on a team server, else None
    embeddable: bool = False         # shown in a notebook's iframe: no frame-ancestors refusal

    @property
    def caches(self) -> Caches:
        """The named cache regions of this app's store (attention_atlas/core/caches.py;
        declared in dashboard_data.REGIONS)."""
        return self.data.caches

    def user(self) -> str:
        """The signed-in user of the current request ("-" without sign-in, "?" if unknown)."""
        if self.auth is None:
            return "-"
        return self.auth.user_name(unknown="?")
