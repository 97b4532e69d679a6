"""The domain type of the inventory: a site, as ``sites import`` reads it and the store keeps it."""

from __future__ import annotations

import difflib
from dataclasses import dataclass


@dataclass(frozen=True)
class Site:
    """One commune service center as the inventory describes it."""

    id: str
    name: str
    province: str
    commune: str
    links: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    power: tuple[str, ...] = ()
    upstream: str | None = None  # the upstream (aggregation router, backbone link) it shares with others


def closest(word: str, candidates: list[str], n: int = 3, cutoff: float = 0.5) -> list[str]:
    """difflib's similarity, ties broken by characters in the same place (``hn-site-O0`` -> ``hn-site-00``
    before ``hn-site-04``)."""
    def score(candidate: str) -> tuple[float, int]:
        matcher = difflib.SequenceMatcher(None, word, candidate)
        return matcher.ratio(), sum(a == b for a, b in zip(word, candidate, strict=False))
    scored = sorted(((score(c), c) for c in candidates), key=lambda x: (-x[0][0], -x[0][1], x[1]))
    return [c for (ratio, _), c in scored[:n] if ratio >= cutoff]
