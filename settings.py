"""Server settings: defaults < config file (TOML, ``ATLAS_CONFIG`` or ``--config``) < environment.

One frozen :class:`Settings` is built at start-up and handed to ``create_app``; nothing else
reads the environment. Every environment variable is ``ATLAS_<FIELD>`` in upper case, e.g.
``ATLAS_CACHE``, ``ATLAS_WORKERS``, ``ATLAS_AUTH``, ``ATLAS_MODEL_ROOTS`` (``:``-separated).
A bad value is one clear line (:class:`SettingsError`) naming the variable and the fix.
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path


class SettingsError(ValueError):
    """A configuration value that cannot be used; the message names it and the fix."""


@dataclass(frozen=True)
class Settings:
    cache: str = "./cache/demo"             # the run store the dashboard serves
    host: str = "127.0.0.1"
    port: int = 8050
    workers: int = 2                         # gunicorn worker processes (team mode)
    threads: int = 4                         # threads per gunicorn worker
    timeout: int = 120                       # gunicorn worker timeout (s)
    auth: str = "none"                       # none | basic | proxy
    users: str = ""                          # basic auth: "alice:secret,bob:pw" (prefer users_file)
    users_file: str = ""                     # basic auth: file of "user:password" lines
    proxy_user_header: str = "X-Forwarded-User"  # auth=proxy: header the reverse proxy sets
    trusted_proxies: tuple[str, ...] = ("127.0.0.1", "::1")  # auth=proxy: addresses allowed to set it
    model_roots: tuple[str, ...] = ()        # folders under which user-chosen models may live
    corpus_roots: tuple[str, ...] = ()       # folders under which user-chosen corpora may live
    upload_max_bytes: int = 5 * 2**20        # uploaded corpus size limit
    job_max_tokens: int = 20000              # token budget of a run started from the UI
    redis_url: str = ""                      # set: Celery + Redis background jobs; empty: diskcache
    jobs_dir: str = ""                       # DiskcacheManager / job registry dir (default <cache>/../.atlas-jobs)
    log_level: str = "INFO"
    team: bool = False                       # gunicorn/team mode: auth required unless auth=none is explicit

    # ------------------------------------------------------------------ derived
    @property
    def jobs_path(self) -> Path:
        if self.jobs_dir:
            return Path(self.jobs_dir).expanduser()
        cache = Path(self.cache).expanduser().resolve()
        return cache.parent / f".{cache.name}-jobs"

    def basic_users(self) -> dict[str, str]:
        """user → password from ``users`` and ``users_file``."""
        pairs = [p for p in self.users.split(",") if p.strip()]
        if self.users_file:
            try:
                text = Path(self.users_file).expanduser().read_text(encoding="utf-8")
            except OSError as exc:
                raise SettingsError(f"ATLAS_USERS_FILE {self.users_file} cannot be read ({exc.strerror}): "
                                    "give a readable file of user:password lines") from exc
            pairs += [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        users = {}
        for p in pairs:
            user, sep, pw = p.strip().partition(":")
            if not sep or not user or not pw:
                raise SettingsError("basic-auth users must be user:password entries (ATLAS_USERS / ATLAS_USERS_FILE)")
            users[user] = pw
        return users

    def public(self) -> dict:
        """The settings safe to log or show (no passwords)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["users"] = f"<{len(self.users.split(',')) if self.users else 0} entries>"
        return d


_TUPLES = {f.name for f in fields(Settings) if f.name.endswith("_roots")}
_INTS = {"port", "workers", "threads", "timeout", "upload_max_bytes", "job_max_tokens"}
_BOOLS = {"team"}


def _coerce(name: str, value, source: str):
    try:
        if name == "trusted_proxies":
            items = value if isinstance(value, (list, tuple)) else str(value).split(",")
            return tuple(str(v).strip() for v in items if str(v).strip())
        if name in _TUPLES:
            if isinstance(value, (list, tuple)):
                items = [str(v) for v in value]
            else:
                items = str(value).split(os.pathsep)
            return tuple(str(Path(v).expanduser().resolve()) for v in items if v.strip())
        if name in _INTS:
            v = int(value)
            if v < 0 or (name == "port" and not 0 < v < 65536) or (name in ("workers", "threads") and v < 1):
                raise ValueError
            return v
        if name in _BOOLS:
            if isinstance(value, bool):
                return value
            s = str(value).strip().lower()
            if s in ("1", "true", "yes", "on"):
                return True
            if s in ("0", "false", "no", "off", ""):
                return False
            raise ValueError
        if name == "auth":
            s = str(value).strip().lower()
            if s not in ("none", "basic", "proxy"):
                raise ValueError
            return s
        return str(value)
    except (TypeError, ValueError):
        raise SettingsError(f"{source}: bad value {value!r} for {name}: "
                            + ("use none, basic or proxy" if name == "auth" else
                               "use a whole number" if name in _INTS else
                               "use true or false" if name in _BOOLS else "fix the value")) from None


def load_settings(config_file: str | None = None, env: dict | None = None, **overrides) -> Settings:
    """Build the settings: defaults, then the TOML file, then ATLAS_* variables, then overrides."""
    env = os.environ if env is None else env
    values: dict = {}
    path = config_file or env.get("ATLAS_CONFIG")
    names = {f.name for f in fields(Settings)}
    if path:
        try:
            raw = tomllib.loads(Path(path).expanduser().read_text(encoding="utf-8"))
        except OSError as exc:
            raise SettingsError(f"config file {path} cannot be read ({exc.strerror}): fix ATLAS_CONFIG/--config") from exc
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise SettingsError(f"config file {path} is not valid TOML ({exc}): fix its syntax") from exc
        raw = raw.get("atlas", raw)
        unknown = sorted(set(raw) - names)
        if unknown:
            raise SettingsError(f"config file {path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        values.update({k: _coerce(k, v, f"config file {path}") for k, v in raw.items()})
    for name in names:
        key = f"ATLAS_{name.upper()}"
        if key in env:
            values[name] = _coerce(name, env[key], key)
    values.update({k: _coerce(k, v, "argument") for k, v in overrides.items() if v is not None})
    s = replace(Settings(), **values)
    if s.auth == "basic" and not s.basic_users():
        raise SettingsError("ATLAS_AUTH=basic needs users: set ATLAS_USERS_FILE (lines of user:password) or ATLAS_USERS")
    return s


def team_settings(env: dict | None = None) -> Settings:
    """The team server's settings (gunicorn.conf.py, wsgi.py): like load_settings, and an
    authentication choice is required (ATLAS_AUTH=none must be explicit)."""
    env = os.environ if env is None else env
    s = load_settings(env=env, team=True)
    if s.auth == "none" and "ATLAS_AUTH" not in env:
        raise SettingsError("team mode needs authentication: set ATLAS_AUTH=basic (and ATLAS_USERS_FILE) or "
                            "ATLAS_AUTH=proxy; ATLAS_AUTH=none serves without it (trusted networks only)")
    return s


__all__ = ["Settings", "SettingsError", "load_settings", "team_settings", "field"]
