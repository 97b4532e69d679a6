"""Criteria over the evidence matrix: met, not met or unknown, per site, all sites at once.

Each criterion selects some checks (rows of the matrix), computes its
statistic for every selected row in one vectorised call, compares with the
threshold, and reduces to one outcome per site: with ``match: each`` the
site's worst check decides (any failure fails, else any unknown is unknown);
with ``match: any`` its best one does. A site with no selected check, no data
or too little coverage is unknown; never met. A statistic known only within
bounds (a quantile from sketches) is met only when both bounds are on the good
side, failed only when both are on the bad side, and otherwise unknown, "too
close" to its threshold: never met without proof.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase

import numpy as np

from commune_collector.judge import estimates
from commune_collector.judge.criteria import CriteriaConfig, Criterion
from commune_collector.judge.matrix import EvidenceMatrix, KeySpec, Wants, WindowView
from commune_collector.judge.quiet import QuietTime
from commune_collector.judge.stats import STATISTICS

UNKNOWN, FAILED, MET = -1, 0, 1
WHY_NONE, WHY_NO_CHECK, WHY_NO_DATA, WHY_LOW_COVERAGE = 0, 1, 2, 3
WHY_NOT_ESTIMATED = 4  # the rounds answered, but the source estimated no value (estimates.py)
WHY_AWAITING_AGENT = 5  # site scope: last heard before the judge started, still within restart_grace
WHY_TOO_CLOSE = 6  # a quantile's proven bounds straddle the threshold
_COMPARE = {">=": np.greater_equal, ">": np.greater, "<=": np.less_equal, "<": np.less,
            "==": np.equal, "!=": np.not_equal}


@dataclass
class SiteIndex:
    """The inventory in array order: every site the verdicts and roll-ups count."""

    ids: list[str]
    names: list[str]
    provinces: list[str]
    communes: list[str]
    upstreams: list[str | None] = field(default_factory=list)  # the inventory's upstream group, if any
    position: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.position = {site: i for i, site in enumerate(self.ids)}
        if not self.upstreams:
            self.upstreams = [None] * len(self.ids)

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class Outcome:
    """One criterion judged for every site (arrays indexed like SiteIndex)."""

    criterion: Criterion
    status: np.ndarray  # int8: MET, FAILED, UNKNOWN
    value: np.ndarray
    evidence_ts: np.ndarray
    coverage: np.ndarray
    row: np.ndarray  # the deciding check's matrix row, -1 when none
    why: np.ndarray  # int8: why unknown
    low: np.ndarray | None = None  # bounds of the value (NaN: exact or none), for statistics that have them
    high: np.ndarray | None = None


@dataclass
class SiteFacts:
    """Per-site facts the site-scope statistics read."""

    now: float
    report_at: np.ndarray  # last report received, NaN if never
    judge_started_at: float
    restart_grace: float = 0.0  # how long agents may take to come back after the judge started
    quiet: QuietTime | None = None  # declared maintenance: left out of every window (judge/quiet.py)


class _Matcher:
    """A criterion's select, compiled: exact values in sets, globs kept aside."""

    def __init__(self, criterion: Criterion):
        self.rules: list[tuple[str, frozenset[str], tuple[str, ...]]] = []
        for key, wanted in criterion.select.items():
            options = [str(v) for v in (wanted if isinstance(wanted, list) else [wanted])]
            globs = tuple(o for o in options if any(ch in o for ch in "*?["))
            self.rules.append((key, frozenset(o for o in options if o not in globs), globs))
        self.check_scope = criterion.scope == "check"

    def __call__(self, probe: str, check: str, labels: dict[str, str]) -> bool:
        for key, exact, globs in self.rules:
            actual = probe if key == "probe" else check if key == "check" else labels.get(key)
            if actual is None:
                return False
            if actual not in exact and not any(fnmatchcase(actual, g) for g in globs):
                return False
        return True


class Evaluator:
    """Judges every criterion for every site from one matrix; keeps its selections up to date."""

    def __init__(self, config: CriteriaConfig, matrix: EvidenceMatrix):
        self.config = config
        self.matrix = matrix
        self.matchers = [_Matcher(c) for c in config.criteria]
        self._members: list[set[int]] = [set() for _ in config.criteria]
        self._seen_rows = 0
        self._label_generation = -1
        self._arrays: list[np.ndarray] = [np.zeros(0, dtype=np.int64) for _ in config.criteria]
        self._site_of_row = np.zeros(0, dtype=np.int64)
        self._site_of_row_key: tuple[int, int] | None = None
        self._views = {}

    def wants(self, probe: str, check: str, labels: dict[str, str]) -> bool:
        """Whether any criterion reads this check (the matrix keeps only those)."""
        return any(m.check_scope and m(probe, check, labels) for m in self.matchers)

    def _refresh(self) -> None:
        m = self.matrix
        if m.generation == self._label_generation:
            return
        start = self._seen_rows if m.generation - self._label_generation == m.rows - self._seen_rows else 0
        if start == 0:
            self._members = [set() for _ in self.matchers]
        check_scoped = [(i, matcher) for i, matcher in enumerate(self.matchers) if matcher.check_scope]
        for config, rows in m.rows_by_config(start).items():  # a matcher runs once per configuration
            probe, check, labels = m.configs[config]
            for i, matcher in check_scoped:
                if matcher(probe, check, labels):
                    self._members[i].update(rows.tolist())
        self._arrays = [np.array(sorted(s), dtype=np.int64) for s in self._members]
        self._seen_rows = m.rows
        self._label_generation = m.generation

    def rows_of(self, index: int) -> np.ndarray:
        self._refresh()
        return self._arrays[index]

    def site_of_row(self, sites: SiteIndex) -> np.ndarray:
        """Each matrix row's site position (-1: not in the inventory), recomputed only when either changed."""
        key = (id(sites), self.matrix.rows)
        if self._site_of_row_key != key:
            known = self._site_of_row if self._site_of_row_key and self._site_of_row_key[0] == id(sites) else None
            start = 0 if known is None else len(known)
            more = np.array([sites.position.get(s, -1) for s in self.matrix.site[start:]], dtype=np.int64)
            self._site_of_row = more if known is None else np.concatenate([known, more])
            self._site_of_row_key = key
        return self._site_of_row

    def evaluate(self, sites: SiteIndex, facts: SiteFacts) -> list[Outcome]:
        self._refresh()
        site_of_row = self.site_of_row(sites)
        self._views: dict[tuple, WindowView] = {}  # criteria with one select and window share their sums
        return [self._one(i, crit, sites, site_of_row, facts) for i, crit in enumerate(self.config.criteria)]

    def _view(self, crit: Criterion, rows: np.ndarray, facts: SiteFacts, sites: np.ndarray) -> WindowView:
        select = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in crit.select.items()))
        key = (select, crit.expr.window)
        view = self._views.get(key)
        if view is None:
            view = self._views[key] = self.matrix.view(rows, crit.expr.window or 3600.0, facts.now,
                                                       self.config.expected_interval, facts.quiet, sites)
        return view

    def _one(self, i: int, crit: Criterion, sites: SiteIndex, site_of_row: np.ndarray,
             facts: SiteFacts) -> Outcome:
        n = len(sites)
        if crit.scope == "site":
            return self._site_scope(crit, n, facts)
        rows = self._arrays[i]
        rows = rows[site_of_row[rows] >= 0] if len(rows) else rows
        out = _empty(crit, n)
        if not len(rows):
            return out
        expr = crit.expr
        view = self._view(crit, rows, facts, site_of_row[rows])
        measured, not_estimated = estimates.account(view, expr.metric,
                                                    STATISTICS[expr.stat].compute(view, expr.metric))
        status, why = _judge(crit, measured.value, measured.coverage, self._min_coverage(crit),
                             measured.low, measured.high)
        why = np.where(not_estimated, WHY_NOT_ESTIMATED, why).astype(np.int8)
        site = site_of_row[rows]
        pick = _deciding(site, status, measured.value, crit)
        chosen = pick[1]
        out.status[pick[0]] = status[chosen]
        out.value[pick[0]] = measured.value[chosen]
        out.evidence_ts[pick[0]] = measured.evidence_ts[chosen]
        out.coverage[pick[0]] = measured.coverage[chosen]
        out.row[pick[0]] = rows[chosen]
        out.why[pick[0]] = why[chosen]
        if measured.low is not None and measured.high is not None:
            out.low, out.high = np.full(n, np.nan), np.full(n, np.nan)
            out.low[pick[0]] = measured.low[chosen]
            out.high[pick[0]] = measured.high[chosen]
        return out

    def _site_scope(self, crit: Criterion, n: int, facts: SiteFacts) -> Outcome:
        view = _SiteView(facts)
        measured = STATISTICS[crit.expr.stat].compute(view, crit.expr.metric)  # type: ignore[arg-type]
        status, why = _judge(crit, measured.value, measured.coverage, self._min_coverage(crit))
        why = np.where(np.isnan(measured.value) & ~np.isnan(facts.report_at), WHY_AWAITING_AGENT, why).astype(np.int8)
        return Outcome(crit, status, measured.value, measured.evidence_ts, measured.coverage,
                       np.full(n, -1, dtype=np.int64), why)

    def _min_coverage(self, crit: Criterion) -> float:
        return self.config.min_coverage if crit.min_coverage is None else crit.min_coverage


class _SiteView:
    """What site-scope statistics read: one element per site."""

    def __init__(self, facts: SiteFacts):
        self.now = facts.now
        self.report_at = facts.report_at
        self.judge_started_at = facts.judge_started_at
        self.restart_grace = facts.restart_grace


def _empty(crit: Criterion, n: int) -> Outcome:
    return Outcome(crit, np.full(n, UNKNOWN, dtype=np.int8), np.full(n, np.nan), np.full(n, np.nan),
                   np.zeros(n), np.full(n, -1, dtype=np.int64), np.full(n, WHY_NO_CHECK, dtype=np.int8))


def _judge(crit: Criterion, value: np.ndarray, coverage: np.ndarray, min_coverage: float,
           lower: np.ndarray | None = None, upper: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per row: MET/FAILED/UNKNOWN and why unknown; with bounds, met and failed need both on one side."""
    no_data = np.isnan(value)
    low = ~no_data & (coverage < min_coverage)
    with np.errstate(invalid="ignore"):
        if lower is None or upper is None:
            holds = _COMPARE[crit.expr.op](value, crit.expr.threshold)
            fails = ~holds
        else:
            holds, fails = _bounded(crit.expr.op, crit.expr.threshold, lower, upper)
    close = ~no_data & ~low & ~holds & ~fails
    status = np.where(no_data | low | close, UNKNOWN, np.where(holds, MET, FAILED)).astype(np.int8)
    why = np.select([no_data, low, close], [WHY_NO_DATA, WHY_LOW_COVERAGE, WHY_TOO_CLOSE], WHY_NONE).astype(np.int8)
    return status, why


def _bounded(op: str, threshold: float, lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(proven to hold, proven to fail) for a value known to lie in ``[lower, upper]``."""
    compare = _COMPARE[op]
    if op in ("==", "!="):
        inside = (lower <= threshold) & (threshold <= upper)
        exact = (lower == threshold) & (upper == threshold)
        equal, differ = exact, ~inside
        return (equal, differ) if op == "==" else (differ, equal)
    low_holds, high_holds = compare(lower, threshold), compare(upper, threshold)
    return low_holds & high_holds, ~low_holds & ~high_holds


def _deciding(site: np.ndarray, status: np.ndarray, value: np.ndarray, crit: Criterion
              ) -> tuple[np.ndarray, np.ndarray]:
    """For each site with rows: (site index, position of the row that decides its outcome).

    each: a failure first, then an unknown, then the met row nearest its threshold.
    any: a met row first (the best), then an unknown, then the failure nearest.
    """
    op = crit.expr.op
    badness = np.nan_to_num(value, nan=0.0)
    if op in (">=", ">"):
        badness = -badness
    elif op in ("==", "!="):
        badness = np.zeros_like(badness)
    if crit.match == "each":
        rank = np.select([status == FAILED, status == UNKNOWN], [0, 1], 2)
        order = np.lexsort((-badness, rank, site))
    else:
        rank = np.select([status == MET, status == UNKNOWN], [0, 1], 2)
        order = np.lexsort((badness, rank, site))
    sorted_sites = site[order]
    first = np.flatnonzero(np.r_[True, sorted_sites[1:] != sorted_sites[:-1]])
    return sorted_sites[first], order[first]


def combine(statuses: list[np.ndarray], n: int) -> np.ndarray:
    """Several criteria into one: any failure fails, else any unknown is unknown, else met."""
    if not statuses:
        return np.full(n, UNKNOWN, dtype=np.int8)
    stack = np.vstack(statuses)
    failed = (stack == FAILED).any(axis=0)
    unknown = (stack == UNKNOWN).any(axis=0)
    return np.where(failed, FAILED, np.where(unknown, UNKNOWN, MET)).astype(np.int8)


def key_specs(config: CriteriaConfig, extra: dict[str, KeySpec] | None = None) -> dict[str, KeySpec]:
    """For each value key some criterion names: the checks that need it, its longest window, histograms."""
    found: dict[str, tuple[list[float], list[_Matcher], list[_Matcher]]] = {}
    thresholds: dict[str, set[float]] = {}
    for crit in config.criteria:
        key = crit.expr.metric
        if key is None or crit.scope != "check":
            continue
        windows, matchers, hist = found.setdefault(key, ([], [], []))
        windows.append(crit.expr.window or 3600.0)
        matchers.append(_Matcher(crit))
        if crit.expr.statistic.hist:
            hist.append(_Matcher(crit))
            thresholds.setdefault(key, set()).add(crit.expr.threshold)
    specs = {key: KeySpec(max(windows), _any_of(matchers), _any_of(hist) if hist else None,
                          tuple(sorted(thresholds.get(key, ()))))
             for key, (windows, matchers, hist) in found.items()}
    for key, spec in (extra or {}).items():
        mine = specs.get(key)
        specs[key] = spec if mine is None else KeySpec(
            max(mine.window, spec.window), _either(mine.wants, spec.wants), mine.hist_wants, mine.thresholds)
    specs.update(estimates.companion_specs(specs))
    return specs


def _any_of(matchers: list[_Matcher]) -> Wants:
    return lambda probe, check, labels: any(m(probe, check, labels) for m in matchers)


def _either(a: Wants, b: Wants) -> Wants:
    return lambda probe, check, labels: a(probe, check, labels) or b(probe, check, labels)
