"""Parsing and validating layer/head selections and other list options."""
from __future__ import annotations


class SelectionError(ValueError):
    """A selection the model cannot satisfy, phrased as one line naming the fix."""


def parse_index_list(text: str | None, upper: int, what: str) -> list[int]:
    """Parse '0-5', '0,3,7', '2-4,9' (or None for all) into sorted indices < upper."""
    if text is None or str(text).strip() in ("", "all"):
        return list(range(upper))
    picked: set[int] = set()
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part:
                lo_s, hi_s = part.split("-", 1)
                lo, hi = int(lo_s), int(hi_s)
                if lo > hi:
                    raise ValueError
                picked.update(range(lo, hi + 1))
            else:
                picked.add(int(part))
        except ValueError:
            raise SelectionError(f"cannot read {what} selection {text!r}: use a list like 0,3,7 or a range like 0-5") from None
    bad = sorted(i for i in picked if i < 0 or i >= upper)
    if bad:
        raise SelectionError(f"unknown {what} {bad[0]}: this model has {upper} {what}s (0-{upper - 1})")
    if not picked:
        raise SelectionError(f"empty {what} selection {text!r}: name at least one {what}")
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
