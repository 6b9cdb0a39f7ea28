"""Identity-disjoint splits of face sets: validation carved from training data, and labeled fractions.

A face's identity is read from its file name: ``pattern`` is a regex whose first group names the person (e.g.
``^(.+)_\\d+$`` for YouTube-Faces frames ``<Person>_<C><F>.jpg``); a name that does not match, or no pattern
(one identity per file, e.g. Helen), is its own identity. Identities are drawn in a seeded random order until the
requested share of *faces* is reached, so that every face of a person lands on the same side of a split.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import torch

from .formats import DataError

YTF_PERSON = r"^(.+)_\d+$"


def identity_keys(names: Sequence[str], pattern: str | None = None, prefix: str = "") -> list[str]:
    """One identity key per name (``prefix`` keeps keys of different sources apart)."""
    rx = re.compile(pattern) if pattern else None
    keys = []
    for n in names:
        stem = Path(n).stem
        m = rx.match(stem) if rx is not None else None
        keys.append(prefix + (m.group(1) if m is not None and m.groups() else stem))
    return keys


def identity_split(keys: Sequence[str], fraction: float, seed: int) -> torch.Tensor:
    """Boolean mask ``(N,)`` of the faces of whole identities, drawn in a random order (``seed``) until at least
    ``round(fraction * N)`` faces are chosen (at least one identity when ``fraction`` > 0)."""
    if not 0 <= fraction <= 1:
        raise DataError(f"split fraction must be in [0, 1], got {fraction}")
    n = len(keys)
    chosen = torch.zeros(n, dtype=torch.bool)
    if fraction == 0 or n == 0:
        return chosen
    if fraction == 1:
        return ~chosen
    unique = sorted(set(keys))
    index = {k: i for i, k in enumerate(unique)}
    ids = torch.tensor([index[k] for k in keys])
    order = torch.randperm(len(unique), generator=torch.Generator().manual_seed(seed))
    goal = max(round(fraction * n), 1)
    counts = torch.bincount(ids, minlength=len(unique))
    taken = torch.zeros(len(unique), dtype=torch.bool)
    total = 0
    for i in order.tolist():
        if total >= goal:
            break
        taken[i] = True
        total += int(counts[i])
    return taken[ids]
