"""A declared maintenance window and the times it covers.

A window is declared for some communes (a list, a province, a shared
upstream group): from one time to another, once, or recurring every day or
week until a last date. The sites it covers are resolved when it is declared
and kept with it, so history shows what it covered even after the inventory
changed. Cancelling keeps the record (who, when); only its future stops.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace

SCOPES = ("sites", "province", "group")
PERIODS = {"day": 86400.0, "week": 7 * 86400.0}


@dataclass(frozen=True)
class MaintenanceWindow:
    """One declaration: its scope, its times, why, and by whom."""

    id: str
    scope: str  # sites | province | group
    targets: tuple[str, ...]  # what was named: site ids, one province slug, or one upstream group
    sites: tuple[str, ...]  # the site ids it covers, resolved when declared
    provinces: tuple[str, ...]  # the provinces of those sites (what a province operator may see and cancel)
    starts_at: float
    ends_at: float  # the end of the first occurrence
    reason: str
    created_by: str
    created_at: float
    every: str | None = None  # day | week: recurring; None: once
    until: float | None = None  # a recurring window's occurrences start before this
    cancelled_at: float | None = None
    cancelled_by: str | None = None
    cancel_note: str | None = None

    @property
    def duration(self) -> float:
        return self.ends_at - self.starts_at

    @property
    def period(self) -> float | None:
        return PERIODS[self.every] if self.every else None

    @property
    def last_end(self) -> float:
        """When its last occurrence ends (a cancelled window ends at its cancellation at the latest)."""
        end = self.ends_at
        if self.period and self.until is not None:
            count = max(math.ceil((self.until - self.starts_at) / self.period), 1)
            end = self.starts_at + (count - 1) * self.period + self.duration
        return end if self.cancelled_at is None else min(end, max(self.cancelled_at, self.starts_at))

    def occurrences(self, lo: float, hi: float) -> Iterator[tuple[float, float]]:
        """(start, end) of each occurrence overlapping [lo, hi), clipped at a cancellation."""
        stop = self.last_end
        period = self.period
        first = 0 if not period else max(math.floor((lo - self.ends_at) / period) + 1, 0)
        k = first
        while True:
            start = self.starts_at + k * (period or 0.0)
            if start >= hi or start >= stop or (period and self.until is not None and start >= self.until):
                return
            end = min(start + self.duration, stop)
            if end > lo and end > start:
                yield start, end
            if not period:
                return
            k += 1

    def active_at(self, t: float) -> tuple[float, float] | None:
        """The occurrence covering ``t``, if any."""
        return next(self.occurrences(t, t + 1e-6), None)

    def cancelled(self, at: float, by: str, note: str | None = None) -> MaintenanceWindow:
        return replace(self, cancelled_at=at, cancelled_by=by, cancel_note=note)

    def to_json(self) -> dict:
        return {"id": self.id, "scope": self.scope, "targets": list(self.targets), "sites": list(self.sites),
                "provinces": list(self.provinces), "starts_at": self.starts_at, "ends_at": self.ends_at,
                "every": self.every, "until": self.until, "reason": self.reason, "created_by": self.created_by,
                "created_at": self.created_at, "cancelled_at": self.cancelled_at,
                "cancelled_by": self.cancelled_by, "cancel_note": self.cancel_note}
