"""The result of a pass as people and programs read it: site verdicts, reasons, roll-ups.

A pass leaves arrays (one element per site); turning 10,000 sites into JSON
every 30 seconds would cost more than judging them, so a ``Snapshot`` keeps
the arrays and renders a site's verdict only when someone asks for it (an API
request, a listener looking at the few sites that changed). Snapshots are
immutable: the API may read one while the next pass builds its successor.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from commune_collector.judge.criteria import CriteriaConfig
from commune_collector.judge.evaluate import (
    FAILED,
    MET,
    Outcome,
    SiteIndex,
)
from commune_collector.judge.facts import CAUSE_NAMES, CONNECTIVITY_NAMES, Facts
from commune_collector.judge.hysteresis import STATE_CODES, STATE_NAMES, Track
from commune_collector.judge.quantity import RATIO, SECONDS, format_value
from commune_collector.judge.quiet import QuietSpan
from commune_collector.judge.reasons import criterion_reason
from commune_collector.judge.rollup import Rollup
from commune_collector.judge.status import STATUS_CODES, STATUS_NAMES, raw_from_state, statuses
from commune_collector.reasons import render as render_reason
from commune_common.units import format_duration


def format_bound(value: float, unit: str) -> str:
    """One more digit than ``format_value``, so bounds either side of a threshold read apart."""
    if unit == SECONDS and 0 < abs(value) < 1:
        return f"{value * 1000:.4g}ms"
    if unit == RATIO:
        return f"{value * 100:.4g}%"
    return format_value(value, unit)


def _bounds(out: Outcome, i: int) -> tuple[float, float]:
    if out.low is None or out.high is None:
        return math.nan, math.nan
    return float(out.low[i]), float(out.high[i])


def _num(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


@dataclass
class Snapshot:
    """Everything one pass decided; read by the API, /metrics, the report and listeners."""

    evaluated_at: float
    config: CriteriaConfig
    sites: SiteIndex
    outcomes: list[Outcome]
    track: Track
    item_tracks: dict[str, Track]
    facts: Facts
    report_at: np.ndarray
    check_ids: list[str]  # matrix row -> check id (append-only list shared with the matrix)
    criterion_rows: list[np.ndarray]
    site_of_row: np.ndarray
    regressions: Mapping[str, list[dict]]
    regression_counts: Mapping[str, int]
    rollup: Rollup
    province_names: dict[str, str] = field(default_factory=dict)
    raw: np.ndarray | None = None  # this pass's combined outcome per site (MET/FAILED/UNKNOWN)
    item_raw: dict[str, np.ndarray] | None = None
    quiet: dict[int, QuietSpan] = field(default_factory=dict)  # site position -> maintenance holding it now

    # -- statuses (judge.status) -------------------------------------------------

    @cached_property
    def status(self) -> np.ndarray:
        """Per site: one of STATUS_NAMES as its code."""
        raw = self.raw if self.raw is not None else raw_from_state(self.track.state, self.track.candidate)
        return statuses(self.track.state, raw, self.report_at)

    @cached_property
    def item_status(self) -> dict[str, np.ndarray]:
        out = {}
        for item, track in self.item_tracks.items():
            raw = (self.item_raw or {}).get(item)
            raw = raw if raw is not None else raw_from_state(track.state, track.candidate)
            out[item] = statuses(track.state, raw, self.report_at)
        return out

    def status_of(self, i: int) -> str:
        return STATUS_NAMES[int(self.status[i])]

    def completed_at(self, i: int) -> float | None:
        """When a stabilising site becomes completed if its criteria keep holding."""
        if self.status_of(i) != "stabilising" or math.isnan(self.track.candidate[i]):
            return None
        return float(self.track.candidate[i]) + self.config.stable_period

    # -- selection ---------------------------------------------------------------

    def index_of(self, site: str) -> int | None:
        return self.sites.position.get(site)

    def state_of(self, i: int) -> str:
        return STATE_NAMES[int(self.track.state[i])]

    def select(self, province: str | None = None, state: str | None = None, item: str | None = None,
               status: str | None = None) -> np.ndarray:
        """Site positions (inventory order, by id) matching the filters; ``item`` + ``state``/``status`` filter on the item."""
        keep = np.ones(len(self.sites), dtype=bool)
        if province is not None:
            keep &= self._provinces == province
        if state is not None:
            code = STATE_CODES[state]
            states = self.item_tracks[item].state if item is not None else self.track.state
            keep &= states == code
        if status is not None:
            codes = self.item_status[item] if item is not None else self.status
            keep &= codes == STATUS_CODES[status]
        return np.flatnonzero(keep)

    @cached_property
    def _provinces(self) -> np.ndarray:
        return np.array(self.sites.provinces, dtype=object)

    # -- one site ----------------------------------------------------------------

    def verdict(self, site: str) -> dict | None:
        i = self.index_of(site)
        return None if i is None else self.render(i)

    def render(self, i: int) -> dict:
        """The SiteVerdict of the API contract for the site at position ``i``."""
        t = self.track
        conn = int(self.facts.connectivity[i])
        return {
            "site": self.sites.ids[i], "name": self.sites.names[i], "province": self.sites.provinces[i],
            "commune": self.sites.communes[i], "state": STATE_NAMES[int(t.state[i])], "status": self.status_of(i),
            "since": float(t.since[i]), "candidate_since": _num(t.candidate[i]),
            "completed_at": self.completed_at(i), "evaluated_at": self.evaluated_at,
            "stable_period_s": self.config.stable_period, "connectivity": CONNECTIVITY_NAMES[conn],
            "outage_cause": CAUSE_NAMES[int(self.facts.outage_cause[i])],
            "upstream": self.upstream_of(i),
            "maintenance": self.maintenance_of(i),
            "on_battery": None if math.isnan(self.facts.on_battery[i]) else bool(self.facts.on_battery[i]),
            "last_report_at": _num(self.report_at[i]),
            "items": {item: STATE_NAMES[int(track.state[i])] for item, track in self.item_tracks.items()},
            "item_status": {item: STATUS_NAMES[int(codes[i])] for item, codes in self.item_status.items()},
            "criteria": [self.criterion(i, k) for k in range(len(self.outcomes))],
            "regressions": list(self.regressions.get(self.sites.ids[i], ())),
        }

    def maintenance_of(self, i: int) -> dict | None:
        """The declared maintenance holding this site's verdict now (judge/quiet.py), or None."""
        span = self.quiet.get(i)
        if span is None:
            return None
        return {"window": span.window, "reason": span.reason, "starts_at": span.starts_at, "ends_at": span.ends_at,
                "held_until": span.end}

    def upstream_of(self, i: int) -> dict | None:
        """The upstream outage that explains this site's outage (judge/upstream.py), or None."""
        index = self.facts.upstream
        if index is None or index[i] < 0:
            return None
        return self.facts.upstream_events[int(index[i])]

    def criterion(self, i: int, k: int) -> dict:
        out = self.outcomes[k]
        crit = out.criterion
        status = int(out.status[i])
        min_cov = self.config.min_coverage if crit.min_coverage is None else crit.min_coverage
        low, high = _bounds(out, i)
        why = criterion_reason(crit, float(out.value[i]), int(out.why[i]), float(out.coverage[i]), min_cov,
                               low, high)
        return {
            "id": crit.id, "item": crit.item, "title": {"en": crit.title.en, "vi": crit.title.vi},
            "required": crit.required, "met": True if status == MET else False if status == FAILED else None,
            "value": _num(out.value[i]), "threshold": crit.expr.threshold, "op": crit.expr.op,
            "unit": crit.expr.unit, "expr": crit.expr.text, "window_s": crit.expr.window,
            "value_low": _num(low), "value_high": _num(high),
            "evidence_ts": _num(out.evidence_ts[i]), "coverage": round(float(out.coverage[i]), 4),
            "reason": render_reason(why.code, why.params, "en"), "reason_code": why.code, "reason_params": why.params,
            "checks": self.checks_of(i, k),
        }

    def checks_of(self, i: int, k: int) -> list[str]:
        order, sites = self._criterion_sites[k]
        lo, hi = np.searchsorted(sites, i, "left"), np.searchsorted(sites, i, "right")
        rows = self.criterion_rows[k][order[lo:hi]]
        return sorted(self.check_ids[r] for r in rows)

    @cached_property
    def _criterion_sites(self) -> list[tuple[np.ndarray, np.ndarray]]:
        out = []
        for rows in self.criterion_rows:
            sites = self.site_of_row[rows] if len(rows) else np.zeros(0, dtype=np.int64)
            order = np.argsort(sites, kind="stable")
            out.append((order, sites[order]))
        return out

    def failing(self, i: int) -> list[dict]:
        """Criteria not met (or unknown when required) at site ``i``, with their reasons."""
        rows = []
        for k, out in enumerate(self.outcomes):
            status = int(out.status[i])
            if status == FAILED or (status != MET and out.criterion.required):
                crit = self.criterion(i, k)
                rows.append({"id": crit["id"], "item": crit["item"], "title": crit["title"], "met": crit["met"],
                             "reason": crit["reason"],
                             "reason_code": crit["reason_code"], "reason_params": crit["reason_params"]})
        return rows

    def commune_row(self, i: int) -> dict:
        """A commune in a province list; a site that never reported has no criteria to list, only that fact."""
        status = self.status_of(i)
        return {"site": self.sites.ids[i], "name": self.sites.names[i], "commune": self.sites.communes[i],
                "state": self.state_of(i), "status": status, "since": float(self.track.since[i]),
                "completed_at": self.completed_at(i), "maintenance": self.maintenance_of(i),
                "failing": [] if status == "never_reported" else self.failing(i)}

    def fleet_summary(self) -> dict:
        """Communes by what an operator does about them, and the upstream outages of this pass."""
        state, reported = self.track.state, ~np.isnan(self.report_at)
        return {"completed": int((state == STATE_CODES["completed"]).sum()),
                "failing": int((state == STATE_CODES["not_completed"]).sum()),
                "waiting": int(((state == STATE_CODES["unknown"]) & reported).sum()),
                "never_reported": int((~reported).sum()), "total": len(self.sites),
                "upstream": list(self.facts.upstream_events)}

    # -- for listeners -----------------------------------------------------------

    def views(self) -> VerdictViews:
        return VerdictViews(self)

    def stable_text(self) -> str:
        return format_duration(self.config.stable_period)


class SiteVerdictView:
    """A site's verdict rendered on first use; ``site``, ``province`` and ``state`` are free."""

    __slots__ = ("_snapshot", "_i", "_dict")

    def __init__(self, snapshot: Snapshot, i: int):
        self._snapshot = snapshot
        self._i = i
        self._dict: dict | None = None

    @property
    def site(self) -> str:
        return self._snapshot.sites.ids[self._i]

    @property
    def province(self) -> str:
        return self._snapshot.sites.provinces[self._i]

    @property
    def name(self) -> str:
        return self._snapshot.sites.names[self._i]

    @property
    def state(self) -> str:
        return self._snapshot.state_of(self._i)

    def model_dump(self) -> dict:
        if self._dict is None:
            self._dict = self._snapshot.render(self._i)
        return self._dict

    def __repr__(self) -> str:
        return f"SiteVerdictView({self.site!r}, {self.state!r})"


class VerdictViews(Mapping[str, SiteVerdictView]):
    """``site -> SiteVerdictView`` over a snapshot, without rendering anything up front."""

    def __init__(self, snapshot: Snapshot):
        self._snapshot = snapshot

    def __getitem__(self, site: str) -> SiteVerdictView:
        i = self._snapshot.index_of(site)
        if i is None:
            raise KeyError(site)
        return SiteVerdictView(self._snapshot, i)

    def __iter__(self) -> Iterator[str]:
        return iter(self._snapshot.sites.ids)

    def __len__(self) -> int:
        return len(self._snapshot.sites)

    @property
    def upstream_events(self) -> list[dict]:
        """This pass's upstream outages (judge/upstream.py), for the alerting listener."""
        return list(self._snapshot.facts.upstream_events)

    @property
    def upstream_members(self) -> dict[str, list[tuple[str, str]]]:
        """Each upstream event's member communes as (site, province): the alerting listener holds their
        alerts by site, whichever province each is in (an inventory upstream group may span provinces)."""
        facts, sites = self._snapshot.facts, self._snapshot.sites
        out: dict[str, list[tuple[str, str]]] = {str(e["key"]): [] for e in facts.upstream_events}
        if facts.upstream is None:
            return out
        for i in np.flatnonzero(facts.upstream >= 0):
            out[str(facts.upstream_events[int(facts.upstream[i])]["key"])].append((sites.ids[i], sites.provinces[i]))
        return out
