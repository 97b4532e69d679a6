"""Exponential backoff with full jitter, and ``Retry-After``."""

from __future__ import annotations

import email.utils
import random
from dataclasses import dataclass, field

BACKOFF_BASE = 1.0


@dataclass
class Backoff:
    """Exponential backoff with full jitter: the n-th wait is uniform in [base, min(cap, base*2^n)].

    Jitter spreads 10,000 agents that lost the collector at the same moment,
    so they do not all come back in the same second.
    """

    cap: float = 300.0
    base: float = BACKOFF_BASE
    rng: random.Random = field(default_factory=random.Random)
    failures: int = 0

    def next_delay(self, retry_after: float | None = None) -> float:
        ceiling = min(self.cap, self.base * 2 ** min(self.failures, 30))
        self.failures += 1
        delay = max(self.base, self.rng.uniform(0, ceiling))
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.cap))
        return delay

    def reset(self) -> None:
        self.failures = 0


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """``Retry-After`` as seconds from now: either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)
