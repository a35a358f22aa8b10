"""Parsing and validating layer/head selections and other list options."""
from __future__ import annotations


class SelectionError(ValueError):
    """A selection the model cannot satisfy, phrased as one line naming the fix."""


MAX_INDEX = 4096   # no model has more layers or heads: a bound checked before the model is even loaded


def check_index_syntax(text: str | None, what: str) -> None:
    """Syntax and a sane bound of a layer/head selection, before the model is loaded (fast failure)."""
    if text is None or str(text).strip() in ("", "all"):
        return
    parse_index_list(text, MAX_INDEX, what,
                     limit_note=f"no model here has more than {MAX_INDEX} {what}s; give {what}s like 0-5 or 0,3,7")


def parse_index_list(text: str | None, upper: int, what: str, limit_note: str | None = None) -> list[int]:
    """Parse '0-5', '0,3,7', '2-4,9' (or None for all) into sorted indices < upper.

    Every number is checked against ``upper`` before a range is expanded, so a hostile
    '0-99999999999' is one error line, never a giant list. ``limit_note`` replaces the
    "this model has N" wording when ``upper`` is a server limit rather than the model's size."""
    if text is None or str(text).strip() in ("", "all"):
        return list(range(upper))
    text = str(text)
    if len(text) > 10000:
        raise SelectionError(f"{what} selection is {len(text)} characters long: use ranges like 0-5")
    spans: list[tuple[int, int]] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part[1:]:
                lo_s, hi_s = part.split("-", 1) if not part.startswith("-") else ("-" + part[1:].split("-", 1)[0], part[1:].split("-", 1)[1])
                lo, hi = int(lo_s), int(hi_s)
                if lo > hi:
                    raise ValueError
            else:
                lo = hi = int(part)
        except ValueError:
            raise SelectionError(f"cannot read {what} selection {text[:80]!r}: use a list like 0,3,7 or a range like 0-5") from None
        spans.append((lo, hi))
    for lo, hi in spans:
        bad = lo if lo < 0 or lo >= upper else hi if hi >= upper else None
        if bad is not None:
            where = limit_note or f"this model has {upper} {what}s (0-{upper - 1})"
            raise SelectionError(f"unknown {what} {bad}: {where}")
    if not spans:
        raise SelectionError(f"empty {what} selection {text[:80]!r}: name at least one {what}")
    picked: set[int] = set()
    for lo, hi in spans:
        picked.update(range(lo, hi + 1))
    return sorted(picked)


def parse_choices(text: str | None, allowed: tuple | list, what: str) -> list:
    """Parse 'pca,umap' against the allowed values (None → all), keeping the allowed order."""
    if text is None or str(text).strip() in ("", "all"):
        return list(allowed)
    wanted = [p.strip().lower() for p in str(text).split(",") if p.strip()]
    as_str = {str(a).lower(): a for a in allowed}
    bad = [w for w in wanted if w not in as_str]
    if bad:
        raise SelectionError(f"unknown {what} {bad[0]!r}: choose from {', '.join(map(str, allowed))}")
    if not wanted:
        raise SelectionError(f"empty {what} list: choose from {', '.join(map(str, allowed))}")
    return [a for a in allowed if str(a).lower() in wanted]
