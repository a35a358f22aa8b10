"""Tokens of a run: rows grouped by input (``InputIndex``, ``joined_index`` for an encoder–decoder run's
joined table) and the seeded per-head token sample (``sample_tokens``) that the Matrix View and the
own-input placement share."""
from __future__ import annotations

import numpy as np


class InputIndex:
    """Token rows grouped by input: ``rows(i)`` = global token indices of input i in position order."""

    def __init__(self, input_id: np.ndarray, position: np.ndarray):
        order = np.lexsort((position, input_id))
        self.order = order
        ids = input_id[order]
        self.input_ids, starts = np.unique(ids, return_index=True)
        self.starts = np.append(starts, len(ids))
        self._pos = {int(i): j for j, i in enumerate(self.input_ids)}

    def rows(self, input_id: int) -> np.ndarray:
        j = self._pos.get(int(input_id))
        if j is None:
            return np.zeros(0, np.int64)
        return self.order[self.starts[j]:self.starts[j + 1]]

    def __iter__(self):
        for j, i in enumerate(self.input_ids):
            yield int(i), self.order[self.starts[j]:self.starts[j + 1]]


def joined_index(arrays: dict, side) -> InputIndex:
    """The InputIndex of a joined token table (source rows then target rows, ``side`` 0/1 per row,
    attention_atlas.core.encdec.joined_tables): ``rows(i)`` lists input i's source tokens, then its
    target tokens, each in position order."""
    pos = np.asarray(arrays["position"]).astype(np.int64)
    return InputIndex(np.asarray(arrays["input_id"]),
                      pos + np.asarray(side).astype(np.int64) * (int(pos.max(initial=0)) + 1))


def sample_tokens(n_tokens: int, points_per_head: int | None, seed: int = 0) -> np.ndarray:
    """Seeded token subset (sorted) used in every head, so colours and search align across
    heads. ``points_per_head`` counts queries + keys; None/0 = all tokens."""
    if not points_per_head or 2 * n_tokens <= points_per_head:
        return np.arange(n_tokens)
    m = max(1, points_per_head // 2)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_tokens, size=m, replace=False))
