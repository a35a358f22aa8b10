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
    request_timeout: int = 60                # team mode: a request running longer stops its worker (0: off)
    auth: str = "none"                       # none | basic | proxy
    users: str = ""                          # basic auth: "alice:<bcrypt hash>[:role],..." (prefer users_file)
    users_file: str = ""                     # basic auth: lines "user:<bcrypt hash>[:role]" (htpasswd -nB format)
    editors: tuple[str, ...] = ()            # user names with the editor role (besides the users file's roles)
    default_role: str = "viewer"             # role of a user the users file / editors do not name: viewer | editor
    session_hours: float = 12.0              # a sign-in lasts at most this long
    session_idle_minutes: float = 60.0       # ... and ends after this long without a request
    login_max_failures: int = 5              # failed sign-ins per user name (4x per address) per window
    login_window: int = 300                  # seconds
    max_jobs_per_user: int = 2               # queued + running jobs one user may have
    upload_quota_bytes: int = 50 * 2**20     # uploaded corpora one user may keep on the server
    proxy_user_header: str = "X-Forwarded-User"  # auth=proxy: header the reverse proxy sets
    trusted_proxies: tuple[str, ...] = ()    # auth=proxy: addresses/networks allowed to set it (none by default)
    proxy_secret_file: str = ""              # auth=proxy: or a shared secret the proxy sends in X-Atlas-Proxy-Secret
    certfile: str = ""                       # TLS certificate (PEM) for gunicorn; with keyfile: serve HTTPS
    keyfile: str = ""                        # TLS private key (PEM)
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

    def hashed_users(self) -> dict[str, tuple[str, str | None]]:
        """user → (bcrypt hash, role or None) from ``users`` and ``users_file`` (hashes only)."""
        from attention_atlas.accounts import UsersFileError, parse_user_lines

        try:
            users = parse_user_lines([p for p in self.users.split(",") if p.strip()], "ATLAS_USERS")
        except UsersFileError as exc:
            raise SettingsError(str(exc)) from None
        if self.users_file:
            try:
                text = Path(self.users_file).expanduser().read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise SettingsError(f"ATLAS_USERS_FILE {self.users_file} cannot be read "
                                    f"({getattr(exc, 'strerror', None) or exc.__class__.__name__}): "
                                    "give a readable file of user:hash lines") from exc
            try:
                users.update(parse_user_lines(text.splitlines(), f"ATLAS_USERS_FILE {self.users_file}"))
            except UsersFileError as exc:
                raise SettingsError(str(exc)) from None
        return users

    def basic_users(self) -> dict[str, tuple[str, str | None]]:  # the name older code used
        return self.hashed_users()

    def proxy_secret(self) -> str:
        if not self.proxy_secret_file:
            return ""
        try:
            secret = Path(self.proxy_secret_file).expanduser().read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingsError(f"ATLAS_PROXY_SECRET_FILE {self.proxy_secret_file} cannot be read: give a readable "
                                "file holding the shared secret") from exc
        if len(secret) < 16:
            raise SettingsError("ATLAS_PROXY_SECRET_FILE holds a secret shorter than 16 characters: use a long random "
                                "one (e.g. `openssl rand -hex 32`)")
        return secret

    def public(self) -> dict:
        """The settings safe to log or show (no passwords)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["users"] = f"<{len(self.users.split(',')) if self.users else 0} entries>"
        d["proxy_secret_file"] = "<set>" if self.proxy_secret_file else ""
        return d


_TUPLES = {f.name for f in fields(Settings) if f.name.endswith("_roots")}
_INTS = {"port", "workers", "threads", "timeout", "request_timeout", "upload_max_bytes", "job_max_tokens", "login_max_failures",
         "login_window", "max_jobs_per_user", "upload_quota_bytes"}
_FLOATS = {"session_hours", "session_idle_minutes"}
_BOOLS = {"team"}


def _coerce(name: str, value, source: str):
    try:
        if name in _FLOATS:
            v = float(value)
            if not v > 0:
                raise ValueError
            return v
        if name == "default_role":
            r = str(value).strip().lower()
            if r not in ("viewer", "editor"):
                raise ValueError
            return r
        if name in ("trusted_proxies", "editors"):
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
                               "use viewer or editor" if name == "default_role" else
                               "use a positive number" if name in _FLOATS else
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
    if s.auth == "basic" and not s.hashed_users():
        raise SettingsError("ATLAS_AUTH=basic needs users: set ATLAS_USERS_FILE (lines of user:hash made by "
                            "`atlas hash-password <user>`)")
    if s.auth == "proxy":
        from attention_atlas.accounts import UsersFileError, _networks

        try:
            _networks(s.trusted_proxies)
        except UsersFileError as exc:
            raise SettingsError(str(exc)) from None
        if not s.trusted_proxies and not s.proxy_secret():
            raise SettingsError("ATLAS_AUTH=proxy trusts no address by default: set ATLAS_TRUSTED_PROXIES to the reverse "
                                "proxy's address(es), or ATLAS_PROXY_SECRET_FILE to a secret the proxy sends in "
                                "X-Atlas-Proxy-Secret")
    if bool(s.certfile) != bool(s.keyfile):
        raise SettingsError("TLS needs both ATLAS_CERTFILE and ATLAS_KEYFILE (PEM files): set both, or neither")
    for name in ("certfile", "keyfile"):
        if getattr(s, name) and not Path(getattr(s, name)).expanduser().is_file():
            raise SettingsError(f"ATLAS_{name.upper()} {getattr(s, name)} is not a readable file: give the PEM file")
    return s


LOOPBACK = ("127.", "::1", "localhost")


def exposure_warning(s: Settings) -> str | None:
    """The loud warning for a server without authentication on an address others can reach."""
    if s.auth != "none" or str(s.host).startswith(LOOPBACK) or str(s.host) in ("[::1]",):
        return None
    bar = "!" * 78
    return (f"{bar}\nWARNING: ATLAS_AUTH=none and the server listens on {s.host}:{s.port}, an address other machines can\n"
            "reach: ANYONE who can connect can read every run and start computations. Set ATLAS_AUTH=basic\n"
            "(with ATLAS_USERS_FILE) or ATLAS_AUTH=proxy, or ATLAS_HOST=127.0.0.1.\n" + bar)


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


def setup_logging(level: str = "INFO") -> None:
    """One line per event: time, level, logger, message (requests come from serving.py)."""
    import logging

    logging.basicConfig(level=getattr(logging, str(level).upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # serving.py logs each request once
