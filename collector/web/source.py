"""What the status page reads: the same verdict documents as the JSON API.

The page calls the judge's Python functions, never HTTP, so a page costs one
in-process read of the judge's snapshot: no N+1 queries. The shapes are those
of the verdict API contract (``/api/v1/provinces``, ``/api/v1/provinces/{slug}``,
``/api/v1/verdicts/{site}``, ``/api/v1/history``).
"""

from __future__ import annotations

from typing import Any, Protocol

from commune_collector.judge.documents import (
    failing_now,
    province_detail,  # what /api/v1/provinces/{slug} serves
    regressions_since,
)


class VerdictSource(Protocol):
    """The four reads the status page needs, each returning the API's JSON document."""

    def provinces(self) -> dict[str, Any] | None:
        """The national roll-up (the body of ``GET /api/v1/provinces``); None before the first pass."""
        ...

    def province(self, slug: str) -> dict[str, Any] | None:
        """One province with its communes and their failing reasons; None if unknown."""
        ...

    def verdict(self, site: str) -> dict[str, Any] | None:
        """One SiteVerdict with every criterion; None if the site is unknown."""
        ...

    def history(self, province: str | None, days: int) -> dict[str, Any]:
        """Daily counts toward the deadline: the body of ``GET /api/v1/history``."""
        ...


class JudgeSource:
    """The judge's latest snapshot read the way the JSON API reads it.

    ``provinces()`` returns None until the first pass has finished; pages then
    say "not judged yet" rather than showing zeros that look like a verdict.
    """

    def __init__(self, judge: Any):
        self.judge = judge

    def _snapshot(self) -> Any:
        return self.judge.snapshot

    def provinces(self) -> dict[str, Any] | None:
        snapshot = self._snapshot()
        return None if snapshot is None else snapshot.rollup.to_json()

    def province(self, slug: str) -> dict[str, Any] | None:
        snapshot = self._snapshot()
        return None if snapshot is None else province_detail(snapshot, slug)

    def verdict(self, site: str) -> dict[str, Any] | None:
        snapshot = self._snapshot()
        return None if snapshot is None else snapshot.verdict(site)

    def history(self, province: str | None, days: int) -> dict[str, Any]:
        return self.judge.history(province, days)

    def failing_now(self) -> list[dict[str, Any]]:
        """Communes failing now (optional for a source: the national page's list of what fails)."""
        snapshot = self._snapshot()
        return [] if snapshot is None else failing_now(snapshot)

    def regressions_since(self, since: float) -> list[dict[str, Any]]:
        snapshot = self._snapshot()
        return [] if snapshot is None else regressions_since(snapshot, since)

    def fleet(self) -> dict[str, Any] | None:
        """Counts by state (never reported apart) and the upstream outages: the national page's first card."""
        snapshot = self._snapshot()
        return None if snapshot is None else snapshot.fleet_summary()
