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

from commune_collector.judge.criteria import CriteriaConfig, Criterion
from commune_collector.judge.evaluate import (
    FAILED,
    MET,
    WHY_LOW_COVERAGE,
    WHY_NO_CHECK,
    WHY_NO_DATA,
    Outcome,
    SiteIndex,
)
from commune_collector.judge.facts import CAUSE_NAMES, CONNECTIVITY_NAMES, Facts
from commune_collector.judge.hysteresis import STATE_CODES, STATE_NAMES, Track
from commune_collector.judge.quantity import format_value, format_window
from commune_collector.judge.rollup import Rollup
from commune_common.units import format_duration
from commune_common.wire import split_key

_NO_WINDOW_IN_REASON = {"last", "last_ok_age", "report_age"}


def metric_label(key: str | None) -> str:
    """``icmp_rtt_seconds{stat="avg"}`` -> ``icmp rtt (avg)``."""
    if not key:
        return ""
    name, labels = split_key(key)
    for suffix in ("_seconds", "_ratio"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    text = name.replace("_", " ")
    return f"{text} ({labels['stat']})" if "stat" in labels else text


def value_label(crit: Criterion) -> str:
    return crit.label or crit.expr.statistic.describe.format(metric=metric_label(crit.expr.metric))


def select_text(crit: Criterion) -> str:
    parts = [f"{k}={'|'.join(v) if isinstance(v, list) else v}" for k, v in crit.select.items()]
    return "{" + ", ".join(parts) + "}"


def reason(crit: Criterion, status: int, value: float, why: int, coverage: float, min_coverage: float) -> str:
    """The human sentence: ``loss 12.3% over 24h, threshold < 1%``."""
    expr = crit.expr
    window = expr.window or 0.0
    over = "" if expr.stat in _NO_WINDOW_IN_REASON or not window else f" over {format_window(window)}"
    if why == WHY_NO_CHECK:
        return f"no check matches {select_text(crit)}"
    if why == WHY_NO_DATA:
        if crit.scope == "site":
            return "the agent has never reported"
        if expr.stat == "last":
            return f"no {value_label(crit)} value in the last {format_window(window)}"
        return f"no evidence over {format_window(window)}" if window else "no evidence"
    if why == WHY_LOW_COVERAGE:
        return (f"evidence covers {coverage * 100:.0f}% of {format_window(window)}, "
                f"{min_coverage * 100:.0f}% needed")
    return (f"{value_label(crit)} {format_value(value, expr.unit)}{over}, "
            f"threshold {expr.op} {format_value(expr.threshold, expr.unit)}")


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

    # -- selection ---------------------------------------------------------------

    def index_of(self, site: str) -> int | None:
        return self.sites.position.get(site)

    def state_of(self, i: int) -> str:
        return STATE_NAMES[int(self.track.state[i])]

    def select(self, province: str | None = None, state: str | None = None, item: str | None = None
               ) -> np.ndarray:
        """Site positions (inventory order, by id) matching the filters; ``item`` + ``state`` filter on the item."""
        keep = np.ones(len(self.sites), dtype=bool)
        if province is not None:
            keep &= self._provinces == province
        if state is not None:
            code = STATE_CODES[state]
            states = self.item_tracks[item].state if item is not None else self.track.state
            keep &= states == code
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
            "commune": self.sites.communes[i], "state": STATE_NAMES[int(t.state[i])], "since": float(t.since[i]),
            "candidate_since": _num(t.candidate[i]), "evaluated_at": self.evaluated_at,
            "stable_period_s": self.config.stable_period, "connectivity": CONNECTIVITY_NAMES[conn],
            "outage_cause": CAUSE_NAMES[int(self.facts.outage_cause[i])],
            "upstream": self.upstream_of(i),
            "on_battery": None if math.isnan(self.facts.on_battery[i]) else bool(self.facts.on_battery[i]),
            "last_report_at": _num(self.report_at[i]),
            "items": {item: STATE_NAMES[int(track.state[i])] for item, track in self.item_tracks.items()},
            "criteria": [self.criterion(i, k) for k in range(len(self.outcomes))],
            "regressions": list(self.regressions.get(self.sites.ids[i], ())),
        }

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
        return {
            "id": crit.id, "item": crit.item, "title": {"en": crit.title.en, "vi": crit.title.vi},
            "required": crit.required, "met": True if status == MET else False if status == FAILED else None,
            "value": _num(out.value[i]), "threshold": crit.expr.threshold, "op": crit.expr.op,
            "unit": crit.expr.unit, "expr": crit.expr.text, "window_s": crit.expr.window,
            "evidence_ts": _num(out.evidence_ts[i]), "coverage": round(float(out.coverage[i]), 4),
            "reason": reason(crit, status, float(out.value[i]), int(out.why[i]), float(out.coverage[i]), min_cov),
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
                rows.append({"id": crit["id"], "item": crit["item"], "met": crit["met"], "reason": crit["reason"]})
        return rows

    def commune_row(self, i: int) -> dict:
        return {"site": self.sites.ids[i], "name": self.sites.names[i], "commune": self.sites.communes[i],
                "state": self.state_of(i), "since": float(self.track.since[i]), "failing": self.failing(i)}

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
