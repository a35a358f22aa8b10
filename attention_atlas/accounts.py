"""Team-server accounts: the users-file format (``user:<bcrypt hash>[:role]``), password hashing and
the trusted-proxy address list. Pure parsing, no Flask: settings.py checks the configuration with it at
start-up, teamauth.py signs users in with it."""
from __future__ import annotations

import ipaddress

ROLES = ("viewer", "editor")
HASH_PREFIXES = ("$2a$", "$2b$", "$2y$")


class UsersFileError(ValueError):
    """A users file or ATLAS_USERS entry that cannot be used; one line naming the fix."""


# ------------------------------------------------------------------ passwords
def hash_password(password: str, rounds: int = 12) -> str:
    import bcrypt

    return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(rounds)).decode()


def check_password(password: str, hashed: str) -> bool:
    import bcrypt

    h = hashed.encode()
    if h.startswith(b"$2y$"):  # htpasswd's spelling of the same algorithm
        h = b"$2b$" + h[4:]
    try:
        return bcrypt.checkpw(password.encode("utf-8", "surrogateescape"), h)
    except ValueError:
        return False


def parse_user_lines(lines, source: str) -> dict[str, tuple[str, str | None]]:
    """user → (bcrypt hash, role or None) from ``user:hash[:role]`` entries."""
    users: dict[str, tuple[str, str | None]] = {}
    for n, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, rest = line.partition(":")
        if not sep or not user or not rest:
            raise UsersFileError(f"{source} entry {n} is not user:hash: write lines made by "
                                 "`atlas hash-password <user>` (or `htpasswd -nB <user>`)")
        hashed, _, role = rest.partition(":")
        if not hashed.startswith(HASH_PREFIXES) or len(hashed) < 59:
            raise UsersFileError(f"{source} entry {n} ({user}) holds a plain password, not a bcrypt hash: passwords "
                                 f"are stored hashed only — replace the line with the output of "
                                 f"`atlas hash-password {user}` (or `htpasswd -nB {user}`)")
        role = role.strip().lower() or None
        if role is not None and role not in ROLES:
            raise UsersFileError(f"{source} entry {n} ({user}): unknown role {role!r}: use viewer or editor")
        users[user] = (hashed, role)
    return users


# ------------------------------------------------------------------ addresses
def _networks(specs) -> list:
    nets = []
    for s in specs or ():
        try:
            nets.append(ipaddress.ip_network(str(s).strip(), strict=False))
        except ValueError:
            raise UsersFileError(f"ATLAS_TRUSTED_PROXIES: {s!r} is not an address or network: use e.g. 127.0.0.1 or 10.0.0.0/8") from None
    return nets


def _in(addr: str | None, nets) -> bool:
    try:
        ip = ipaddress.ip_address((addr or "").strip())
    except ValueError:
        return False
    return any(ip in n for n in nets)
