"""Where the judge gets its evidence and inventory: a small protocol, two implementations.

``StoreEvidence`` (in ``commune_collector.store.judge_evidence``) reads the
collector's database; ``MemoryEvidence`` here holds ``CheckSummary`` objects
in memory for unit tests, scenario fixtures and the benchmark. Both hand the
judge only what changed since it last asked, so a pass costs what arrived,
not what is stored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from commune_collector.evidence import BUCKET_SECONDS, CheckSummary
from commune_collector.judge.matrix import BucketRow
from commune_collector.maintenance.windows import MaintenanceWindow

# (site, check, probe, labels) -> SKIP, ROUNDS (good/bad counts only) or VALUES (counts and values)
Keep = Callable[[str, str, str, dict[str, str]], int]
SKIP, ROUNDS, VALUES = 0, 1, 2


@dataclass(frozen=True)
class PartFile:
    """Part of a cold read already loaded by a helper process into a matrix of the judge's own layout,
    saved as a checkpoint (``judge/checkpoint.py``): the judge absorbs its rows instead of reading them."""

    path: Path
    buckets: int  # summaries it holds, counted as read

    def __len__(self) -> int:
        return 1


@dataclass(frozen=True)
class SiteRecord:
    id: str
    name: str
    province: str
    commune: str
    upstream: str | None = None  # shared with other communes (inventory); upstream outages are found per group


class EvidenceSource(Protocol):
    bucket_seconds: float

    def inventory(self) -> list[SiteRecord]:
        """Every site the verdicts and roll-ups count, ordered by id."""
        ...

    def report_times(self) -> dict[str, float]:
        """When each site's agent last delivered a report (collector clock)."""
        ...

    def maintenance(self, since: float) -> list[MaintenanceWindow]:
        """Declared maintenance windows that may cover time after ``since`` (judge/quiet.py)."""
        ...

    def read(self, now: float, horizon: float, keep: Keep, full: bool) -> Iterable[Sequence[BucketRow]]:
        """Batches of the buckets that changed since the previous call (all from ``horizon`` when ``full``).

        ``keep`` filters checks before their values are decoded: the judge
        reads a handful of the ~50 checks a site reports, and the values of
        fewer still (an availability criterion needs only the round counts).
        """
        ...


def row_from_summary(s: CheckSummary) -> BucketRow:
    return BucketRow(s.bucket_start, s.site, s.check, s.probe, dict(s.labels), s.rounds_ok, s.rounds_fail,
                     s.first_ts, s.last_ts, s.last_reason, s.values_json())


@dataclass
class MemoryEvidence:
    """Evidence held in memory: ``add`` summaries (merging like the aggregator does), set report times."""

    sites: list[SiteRecord] = field(default_factory=list)
    bucket_seconds: float = float(BUCKET_SECONDS)
    summaries: dict[tuple[str, str, float], CheckSummary] = field(default_factory=dict)
    reported: dict[str, float] = field(default_factory=dict)
    windows: list[MaintenanceWindow] = field(default_factory=list)
    _changed: set[tuple[str, str, float]] = field(default_factory=set)

    def inventory(self) -> list[SiteRecord]:
        return sorted(self.sites, key=lambda s: s.id)

    def report_times(self) -> dict[str, float]:
        return dict(self.reported)

    def maintenance(self, since: float) -> list[MaintenanceWindow]:
        return [w for w in self.windows if w.last_end >= since]

    def add(self, summary: CheckSummary) -> None:
        """Fold one bucket in; evidence for an existing bucket merges (late, spooled evidence)."""
        key = (summary.site, summary.check, summary.bucket_start)
        held = self.summaries.get(key)
        if held is None:
            self.summaries[key] = summary
        else:
            held.merge(summary)
        self._changed.add(key)

    def add_all(self, summaries: Iterable[CheckSummary]) -> None:
        for s in summaries:
            self.add(s)

    def read(self, now: float, horizon: float, keep: Keep, full: bool) -> Iterable[Sequence[BucketRow]]:
        keys = list(self.summaries) if full else list(self._changed)
        self._changed.clear()
        batch = [row_from_summary(s) for s in (self.summaries[k] for k in keys)
                 if s.bucket_start >= horizon and keep(s.site, s.check, s.probe, s.labels)]
        return [batch] if batch else []
