"""Upstream outages: many communes of one province losing their primary path at once.

When a province's data center or backbone fails, every commune behind it
loses its primary link within the same minutes. Judged one by one that is
hundreds of "network" outages and hundreds of communes blamed; Nagios calls
such hosts UNREACHABLE behind a failed parent. Here the judge tells them apart
from the evidence alone: a site has *lost its path* when its reports say its
primary link is down (on the backup or cut off), unless its UPS is on battery
(power outages keep their own cause). Each pass remembers since when each site
has been in that state; when, in one province (or one group of communes the
inventory says share an upstream), the sites that lost their path within
``within`` of each other are at least ``min_sites`` and at least ``min_share``
of the communes that reported in the last day, that cluster is an upstream
outage: one event, and each member's outage cause is ``upstream`` with the
event's key. Sites that fell silent in the same minutes (no backup link: the
cut took their reports too) join the event, but silence alone never makes
one: a collector that hears nobody has a problem of its own.

"Since when" is the pass that first saw the site down, so after a judge
restart every site already down shares the first pass's time: a province
already 30 % down at start is reported as one upstream event, which is what
an operator would conclude too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from commune_collector.judge.facts import CAUSE_UPSTREAM, CONN_BACKUP_ONLY, CONN_DOWN, Facts

DAY = 86400.0


@dataclass(frozen=True)
class UpstreamEvent:
    """One upstream outage: the group that lost its path, since when, and how many of its communes."""

    key: str  # "province:<slug>" or "group:<name>": the alert's upstream label
    kind: str  # province | group
    name: str
    province: str | None
    started_at: float
    sites: tuple[str, ...]
    reporting: int

    @property
    def share(self) -> float:
        return len(self.sites) / self.reporting if self.reporting else 0.0

    def to_json(self) -> dict:
        return {"key": self.key, "kind": self.kind, "name": self.name, "province": self.province,
                "started_at": self.started_at, "sites": len(self.sites), "reporting": self.reporting,
                "share": round(self.share, 4)}


@dataclass
class UpstreamDetector:
    """Keeps when each site lost its path, and finds the clusters that make an upstream outage."""

    min_share: float = 0.3
    min_sites: int = 5
    within: float = 300.0
    lost_since: dict[str, float] = field(default_factory=dict)
    _seen_down: set[str] = field(default_factory=set)

    def apply(self, facts: Facts, ids: list[str], provinces: list[str], groups: list[str | None],
              report_at: np.ndarray, now: float, quiet: np.ndarray | None = None) -> list[UpstreamEvent]:
        """Mark members' cause upstream in ``facts`` (in place) and return the events of this pass.

        Sites in declared maintenance (``quiet``) never count as having lost their path: a planned cut
        of a whole province is not an upstream outage.
        """
        mains = facts.on_battery != 1.0
        if quiet is not None:
            mains = mains & ~quiet
        seen_down = ((facts.connectivity == CONN_BACKUP_ONLY) | (facts.connectivity == CONN_DOWN)) & mains
        silent = facts.silent & mains & ~seen_down
        reporting = ~np.isnan(report_at) & (now - np.nan_to_num(report_at, nan=-np.inf) < DAY)
        self.lost_since = {ids[i]: self.lost_since.get(ids[i], now)
                           for i in np.flatnonzero((seen_down | silent) & reporting)}
        self._seen_down = {ids[i] for i in np.flatnonzero(seen_down)}
        events = self._find("province", provinces, provinces, ids, reporting)
        if any(groups):
            events += self._find("group", groups, provinces, ids, reporting)
        position = {site: i for i, site in enumerate(ids)}
        facts.upstream = np.full(len(ids), -1, dtype=np.int32)
        for e_index, event in enumerate(events):
            rows = np.array([position[s] for s in event.sites], dtype=np.int64)
            facts.outage_cause[rows] = CAUSE_UPSTREAM
            facts.upstream[rows] = e_index
        facts.upstream_events = [e.to_json() for e in events]
        return events

    def _find(self, kind: str, keys: list[str | None], provinces: list[str], ids: list[str],
              reporting: np.ndarray) -> list[UpstreamEvent]:
        members: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            if key and reporting[i]:
                members.setdefault(key, []).append(i)
        out = []
        for key, rows in sorted(members.items()):
            lost = sorted((self.lost_since[ids[i]], ids[i]) for i in rows if ids[i] in self.lost_since)
            cluster = _densest([x for x in lost if x[1] in self._seen_down], self.within)
            if len(cluster) >= self.min_sites and len(cluster) >= self.min_share * len(rows):
                # silent sites that went quiet with them join (their path to us was behind the cut too),
                # but silence alone never makes an event: a collector that hears nobody is not an upstream
                lo, hi = cluster[0][0] - self.within, cluster[-1][0] + self.within
                cluster = [x for x in lost if lo <= x[0] <= hi]
                province = provinces[rows[0]] if kind == "province" or len({provinces[i] for i in rows}) == 1 \
                    else None
                out.append(UpstreamEvent(f"{kind}:{key}", kind, key, province, cluster[0][0],
                                         tuple(site for _, site in cluster), len(rows)))
        return out


def _densest(times: list[tuple[float, str]], within: float) -> list[tuple[float, str]]:
    """The largest run of (time, site), sorted by time, spanning at most ``within`` (earliest on ties)."""
    best: tuple[int, int] = (0, 0)
    lo = 0
    for hi in range(len(times)):
        while times[hi][0] - times[lo][0] > within:
            lo += 1
        if hi + 1 - lo > best[1] - best[0]:
            best = (lo, hi + 1)
    return times[best[0]:best[1]]
