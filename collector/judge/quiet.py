"""Quiet time: declared maintenance, which counts neither for nor against a site.

Evidence is kept in hourly buckets, so a window is rounded out to whole
buckets: every bucket an occurrence touches is left out of every criterion's
window for the sites it covers. Its rounds are neither up nor down, and the
rounds a window expects shrink with it, so coverage and availability stay
honest about the time that is left (as for the collector's own outages). The
verdict is *held* (neither earned nor lost, no regression, the stable clock
left alone) from the first such bucket until the last one ends, and for
``restart_grace`` after that it is held while the evidence is still too thin
to judge (the agent, or the power, is coming back), so a window's end does
not flash "unknown". The alerts are silenced for the exact window by
``collector.maintenance.silences``.

Rounding out drops up to one bucket of evidence on either side of a window
that does not start and end on the hour: that evidence is not counted either
way, which never turns a failure into a pass by itself (coverage falls with
it), and it is what lets a cut declared 08:30-11:30 not count at all.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from commune_collector.maintenance.windows import MaintenanceWindow


@dataclass(frozen=True)
class QuietSpan:
    """One occurrence of a window: its sites (positions), its bucket-rounded time, and what to show."""

    sites: np.ndarray  # int64 site positions
    start: float  # rounded down to a bucket
    end: float  # rounded up to a bucket
    window: str
    reason: str
    starts_at: float  # the occurrence as declared, for pages
    ends_at: float
    kind: str = "maintenance"  # or "upstream": an upstream outage's time, when upstream.counts is false


class QuietTime:
    """The quiet spans of one pass, asked per matrix row (by its site) or per site."""

    def __init__(self, spans: list[QuietSpan], n_sites: int):
        self.spans = spans
        self.n_sites = n_sites

    def with_spans(self, spans: list[QuietSpan]) -> QuietTime:
        return QuietTime(self.spans + spans, self.n_sites)

    @classmethod
    def from_windows(cls, windows: Iterable[MaintenanceWindow], position: dict[str, int], n_sites: int,
                     lo: float, hi: float, bucket_s: float) -> QuietTime:
        """The occurrences overlapping [lo, hi) of every window, for the sites in ``position``."""
        spans = []
        for window in windows:
            sites = np.array(sorted(position[s] for s in window.sites if s in position), dtype=np.int64)
            if not len(sites):
                continue
            for start, end in window.occurrences(lo - bucket_s, hi):
                spans.append(QuietSpan(sites, math.floor(start / bucket_s) * bucket_s,
                                       math.ceil(end / bucket_s) * bucket_s, window.id, window.reason, start, end))
        return cls(spans, n_sites)

    def __bool__(self) -> bool:
        return bool(self.spans)

    def hidden(self, buckets: np.ndarray, sites: np.ndarray) -> np.ndarray:
        """Per (row, slot) of ``buckets`` (bucket starts): whether that row's site was quiet then."""
        out = np.zeros(buckets.shape, dtype=bool)
        for span in self.spans:
            rows = np.isin(sites, span.sites)
            if rows.any():
                b = buckets[rows]
                out[rows] |= (b >= span.start) & (b < span.end)
        return out

    def hidden_seconds(self, sites: np.ndarray, lo: float, hi: float) -> np.ndarray:
        """Per element of ``sites``: seconds of [lo, hi) that were quiet for it (overlaps counted once)."""
        out = np.zeros(len(sites))
        touching = [s for s in self.spans if s.end > lo and s.start < hi]
        if not touching:
            return out
        edges = np.unique(np.clip([lo, hi] + [x for s in touching for x in (s.start, s.end)], lo, hi))
        cells = np.zeros((len(sites), len(edges) - 1), dtype=bool)
        for span in touching:
            rows = np.isin(sites, span.sites)
            cells[rows] |= (edges[:-1] >= span.start) & (edges[1:] <= span.end)
        return cells.astype(np.float64) @ np.diff(edges)

    def held(self, now: float, grace: float = 0.0) -> np.ndarray:
        """Per site: the verdict is held now (a span covers the bucket of ``now``), or, with ``grace``,
        a span ended less than ``grace`` ago (the agent may still be coming back)."""
        out = np.zeros(self.n_sites, dtype=bool)
        for span in self.spans:
            if span.start <= now < span.end + grace:
                out[span.sites] = True
        return out

    def current(self, now: float) -> dict[int, QuietSpan]:
        """Site position -> the maintenance holding it now (the one ending last when several do)."""
        out: dict[int, QuietSpan] = {}
        for span in sorted(self.spans, key=lambda s: s.end):
            if span.kind == "maintenance" and span.start <= now < span.end:
                out.update(dict.fromkeys(span.sites.tolist(), span))
        return out


NO_QUIET = QuietTime([], 0)


@dataclass
class UpstreamSpans:
    """The time each upstream outage covered its communes, for ``upstream.counts: false``.

    An event is extended to every pass that still sees it and closed when it is
    gone; spans older than the longest window are forgotten. They live in the
    judge's memory (and its checkpoint): after a restart without a checkpoint,
    past upstream time counts again, which can only fail a commune, never pass it.
    """

    spans: dict[str, tuple[tuple[str, ...], float, float, str]]  # event@start -> (sites, start, end, name)

    @classmethod
    def empty(cls) -> UpstreamSpans:
        return cls({})

    def record(self, events: Iterable[dict], members: dict[str, tuple[str, ...]], now: float, keep: float) -> None:
        for event in events:
            key = f"{event['key']}@{event['started_at']:.0f}"
            sites, start, _, name = self.spans.get(key, ((), float(event["started_at"]), now, event["name"]))
            self.spans[key] = (tuple(sorted(set(sites) | set(members.get(event["key"], ())))), start, now, name)
        self.spans = {k: v for k, v in self.spans.items() if v[2] >= now - keep}

    def quiet(self, position: dict[str, int], bucket_s: float) -> list[QuietSpan]:
        out = []
        for key, (sites, start, end, name) in self.spans.items():
            rows = np.array(sorted(position[s] for s in sites if s in position), dtype=np.int64)
            if len(rows):
                out.append(QuietSpan(rows, math.floor(start / bucket_s) * bucket_s,
                                     math.ceil(end / bucket_s) * bucket_s, key, name, start, end, "upstream"))
        return out

    def to_json(self) -> dict:
        return {k: [list(v[0]), v[1], v[2], v[3]] for k, v in self.spans.items()}

    @classmethod
    def from_json(cls, data: dict) -> UpstreamSpans:
        return cls({k: (tuple(v[0]), float(v[1]), float(v[2]), str(v[3])) for k, v in data.items()})
