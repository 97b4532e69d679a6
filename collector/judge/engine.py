"""The judge: one pass turns new evidence into verdicts, roll-ups, history and change events.

A pass (every ``judge.interval`` in the collector, or called directly by
tests and the benchmark):

1. read the buckets that changed since the last pass into the evidence matrix
   (late, spooled evidence lands in its old buckets and is re-judged here);
2. evaluate every criterion for every site (vectorised, ``evaluate``);
3. step the hysteresis of every site and every (site, item) (``hysteresis``);
4. work out the present tense: connectivity, power, devices, silence (``facts``);
5. roll up per province and nationally (``rollup``), upsert today's history;
6. persist what changed, publish the new ``Snapshot``, call the listeners
   with this pass's ``VerdictChange`` events and the snapshot.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from commune_collector.judge import checkpoint as checkpoint_mod
from commune_collector.judge import facts as facts_mod
from commune_collector.judge.criteria import CriteriaConfig
from commune_collector.judge.evaluate import (
    FAILED,
    UNKNOWN,
    Evaluator,
    Outcome,
    SiteFacts,
    SiteIndex,
    combine,
    key_specs,
)
from commune_collector.judge.events import Memory, VerdictChange, edges, flags
from commune_collector.judge.facts import FactFinder
from commune_collector.judge.hysteresis import (
    S_COMPLETED,
    S_NOT_COMPLETED,
    STATE_NAMES,
    Track,
    step,
)
from commune_collector.judge.matrix import EvidenceMatrix, KeySpec
from commune_collector.judge.persist import (
    ItemState,
    MemoryVerdictStore,
    StateRow,
    Transition,
    VerdictStore,
)
from commune_collector.judge.quiet import QuietTime, UpstreamSpans
from commune_collector.judge.reads import VerdictReads
from commune_collector.judge.reasons import Reason, criterion_reason
from commune_collector.judge.rollup import history_rows, roll_up
from commune_collector.judge.source import (
    ROUNDS,
    SKIP,
    VALUES,
    EvidenceSource,
    PartFile,
    SiteRecord,
)
from commune_collector.judge.status import raw_from_state, statuses
from commune_collector.judge.upstream import UpstreamDetector
from commune_collector.judge.verdict import Snapshot
from commune_collector.provinces import provinces
from commune_collector.reasons import english

log = logging.getLogger("commune_collector.judge")
Listener = Callable[[list[VerdictChange], Any], Any]
TIMEZONE = "Asia/Ho_Chi_Minh"
_MAX_REGRESSIONS_SHOWN = 20


@dataclass
class PassStats:
    """What one pass did and how long each phase took (for /metrics, logs and the benchmark)."""

    at: float = 0.0
    sites: int = 0
    buckets_read: int = 0
    changes: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds.values())


class _Timer:
    def __init__(self, stats: PassStats):
        self.stats = stats
        self.last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.stats.seconds[name] = self.stats.seconds.get(name, 0.0) + now - self.last
        self.last = now


class Judge(VerdictReads):
    """Judges every site from ``source`` against ``config``; see the module docstring."""

    def __init__(self, config: CriteriaConfig, source: EvidenceSource, verdicts: VerdictStore | None = None,
                 *, provinces: dict[str, str] | None = None, clock: Callable[[], float] = time.time,
                 timezone: str = TIMEZONE, checkpoint: Path | None = None, checkpoint_interval: float = 600.0):
        self.config = config
        self.source = source
        self.verdicts = verdicts if verdicts is not None else MemoryVerdictStore()
        self.province_names = dict(provinces) if provinces is not None else _canonical_provinces()
        self.clock = clock
        self.tz = ZoneInfo(timezone)
        self.started_at = clock()
        power = {facts_mod.ON_BATTERY_KEY: KeySpec(3600.0, lambda probe, check, labels:
                                                    facts_mod.is_power(probe, labels))}
        self.matrix = EvidenceMatrix(source.bucket_seconds, config.max_window, key_specs(config, power))
        self.evaluator = Evaluator(config, self.matrix)
        self.fact_finder = FactFinder(self.matrix)
        self.upstream = UpstreamDetector()
        self.upstream_spans = UpstreamSpans.empty()  # for upstream.counts: false (judge/quiet.py)
        self.listeners: list[Listener] = []
        self.snapshot: Snapshot | None = None
        self.last_stats = PassStats()
        self.passes = 0
        self._absorbed = 0  # summaries a helper read for this pass (store/judge_helper.py)
        self.regressions_total = 0
        self._sites: SiteIndex | None = None
        self._records: list[SiteRecord] | None = None
        self._track: Track | None = None
        self._item_tracks: dict[str, Track] = {}
        self._memory = Memory()
        self._regressions: dict[str, list[dict]] = {}
        self._regression_counts: dict[str, int] = {}
        self._loaded = False
        self._lock = threading.Lock()
        self._last_prune_day: str | None = None
        self.checkpoint = checkpoint if checkpoint is not None and hasattr(source, "backfill_mark") else None
        self.checkpoint_interval = checkpoint_interval
        self._saved_at: float | None = None
        self._stamp = ""
        if self.checkpoint is not None:
            self._stamp = checkpoint_mod.fingerprint(config, self.matrix)
            source.keep_backfill = True  # type: ignore[attr-defined]
        if hasattr(source, "value_keys"):  # the store's source packs closed hours by what the criteria read
            source.value_keys = self.matrix.keys_of

    def close(self) -> None:
        """Save a checkpoint (when configured), close the source's and the verdict store's connections."""
        with self._lock:
            if self.passes and self.checkpoint is not None:
                self._save_checkpoint(self.last_stats.at)
        for part in (self.source, self.verdicts):
            close = getattr(part, "close", None)
            if callable(close):
                close()

    # -- listeners ----------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(changes, snapshot_views)`` after every pass; it may be a coroutine function."""
        self.listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        if listener in self.listeners:
            self.listeners.remove(listener)

    # -- passes -------------------------------------------------------------------

    def run_pass(self, now: float | None = None) -> Snapshot:
        """One full pass, synchronously; returns the new snapshot (also kept in ``self.snapshot``)."""
        snapshot, changes = self._pass(now)
        pending = self._notify(changes, snapshot)
        if pending:
            _run_coroutines(pending)
        return snapshot

    def pass_once(self, now: float | None = None) -> tuple[Snapshot, list[VerdictChange]]:
        """One pass without calling the listeners (the judge process sends them to the server instead)."""
        return self._pass(now)

    async def arun_pass(self, now: float | None = None) -> Snapshot:
        """One pass in a worker thread (the event loop keeps serving); async listeners awaited here."""
        snapshot, changes = await asyncio.to_thread(self._pass, now)
        pending = await asyncio.to_thread(self._notify, changes, snapshot)
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        return snapshot

    async def run(self, stop: asyncio.Event, interval: float) -> None:
        """Pass every ``interval`` seconds until ``stop`` is set; a failing pass is logged, not fatal."""
        while not stop.is_set():
            try:
                await self.arun_pass()
                await asyncio.to_thread(self.pack_hours)
            except Exception:  # noqa: BLE001 - the next pass may well succeed (database back)
                log.exception("judge pass failed")
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval)
            except TimeoutError:
                pass

    def pack_hours(self, budget: int = 1) -> int:
        """Between passes: pack up to ``budget`` closed hours for the next cold pass (judge/packs.py);
        returns the packs written. A failure is logged: packs only save time."""
        pack = getattr(self.source, "pack_hours", None)
        if pack is None or not self.passes:
            return 0
        with self._lock:
            now = self.last_stats.at
            try:
                return int(pack(now, self.matrix.horizon(now), budget))
            except Exception:  # noqa: BLE001 - the next call tries again; a cold pass reads rows meanwhile
                log.exception("judge: packing closed hours failed")
                return 0

    def _notify(self, changes: list[VerdictChange], snapshot: Snapshot) -> list:
        return notify(self.listeners, changes, snapshot)

    def _pass(self, now: float | None) -> tuple[Snapshot, list[VerdictChange]]:
        with self._lock, _gc_paused():
            now = self.clock() if now is None else now
            stats = PassStats(at=now)
            timer = _Timer(stats)
            self._load_persisted()
            sites = self._inventory()
            stats.sites = len(sites)
            timer.lap("inventory")
            self._absorbed = 0
            stats.buckets_read = self.matrix.load(self._absorbing(self._read(now)), now) + self._absorbed
            timer.lap("read")
            report_at = self._report_times(sites)
            quiet = self._quiet(sites, now)
            outcomes = self.evaluator.evaluate(sites, SiteFacts(now, report_at, self.started_at,
                                                                self.config.restart_grace, quiet))
            timer.lap("evaluate")
            changes, snapshot = self._decide(sites, outcomes, report_at, now, timer, quiet)
            stats.changes = len(changes)
            self.snapshot = snapshot
            self.passes += 1
            self.last_stats = stats
            if self.checkpoint is not None and (self._saved_at is None
                                                or now - self._saved_at >= self.checkpoint_interval):
                self._save_checkpoint(now)
                timer.lap("checkpoint")
            return snapshot, changes

    def _read(self, now: float) -> Any:
        """The source's changes; the first pass restores the checkpoint, or else reads the whole window."""
        horizon = self.matrix.horizon(now)
        if self.passes:
            return self.source.read(now, horizon, self.keep, False)
        if self.checkpoint is not None:
            extra = checkpoint_mod.load(self.matrix, self.checkpoint, self._stamp)
            if extra is not None:
                log.info("judge: evidence restored from %s (saved %.0fs ago)", self.checkpoint,
                         now - float(extra["saved_at"]))
                self._saved_at = float(extra["saved_at"])
                self.upstream_spans = UpstreamSpans.from_json(extra.get("upstream_spans", {}))
                if hasattr(self.source, "resume"):  # read what the checkpoint holds, not every check again
                    first = self.source.resume(self.matrix.kept_checks())
                    self.matrix.bind_keys(self.source.keys, first)  # type: ignore[attr-defined]
                return self.source.read(now, horizon, self.keep, False,  # type: ignore[call-arg]
                                        resume_from=float(extra["bucket"]))
        return self.source.read(now, horizon, self.keep, True)

    def _absorbing(self, batches: Iterable[Any]) -> Iterator[Any]:
        """The batches, with a helper's part of a cold read (``PartFile``) absorbed into the matrix."""
        for batch in batches:
            if not isinstance(batch, PartFile):
                yield batch
                continue
            part = self.matrix.empty_like()
            try:
                if checkpoint_mod.load(part, batch.path, checkpoint_mod.PART_STAMP) is None:
                    raise RuntimeError(f"the cold pass's part {batch.path} could not be read")
                self.matrix.absorb(part)
            finally:
                batch.path.unlink(missing_ok=True)
            self._absorbed += batch.buckets

    def _save_checkpoint(self, now: float) -> None:
        """Save the matrix, then let the source forget the backfill entries it now holds."""
        assert self.checkpoint is not None
        mark = self.source.backfill_mark()  # type: ignore[attr-defined]
        try:
            checkpoint_mod.save(self.matrix, self.checkpoint, self._stamp,
                                {"bucket": self.matrix.bucket_of(now), "saved_at": now, "backfill": mark,
                                 "upstream_spans": self.upstream_spans.to_json()})
        except OSError:
            log.exception("judge: cannot save the checkpoint %s; the next start reads the evidence again",
                          self.checkpoint)
            return
        self._saved_at = now
        self.source.trim_backfill(mark)  # type: ignore[attr-defined]

    # -- steps --------------------------------------------------------------------

    def keep(self, site: str, check: str, probe: str, labels: dict[str, str]) -> int:
        """Whether the judge reads this check, and its values too (sources ask once per check)."""
        if not (self.evaluator.wants(probe, check, labels) or facts_mod.wanted(probe, labels)):
            return SKIP
        return VALUES if self.matrix.keys_of(probe, check, labels) else ROUNDS

    def _inventory(self) -> SiteIndex:
        records: list[SiteRecord] = self.source.inventory()
        if self._sites is not None and records is self._records:
            return self._sites
        self._records = records
        ids = [r.id for r in records]
        if self._sites is not None and self._sites.ids == ids:
            old = self._sites
            if (old.names, old.provinces, old.communes, old.upstreams) == (
                    [r.name for r in records], [r.province for r in records], [r.commune for r in records],
                    [r.upstream for r in records]):
                return old
        sites = SiteIndex(ids, [r.name for r in records], [r.province for r in records],
                          [r.commune for r in records], [r.upstream for r in records])
        self._remap_tracks(sites)
        self._sites = sites
        return sites

    def _remap_tracks(self, sites: SiteIndex) -> None:
        now = self.clock()
        if self._track is None or self._sites is None:
            self._track = Track.fresh(len(sites), now)
            self._item_tracks = {item: Track.fresh(len(sites), now) for item in self.config.items}
            self._restore(sites)
            return
        index = np.array([self._sites.position.get(site, -1) for site in sites.ids], dtype=np.int64)
        self._track = self._track.take(index, now)
        self._item_tracks = {item: track.take(index, now) for item, track in self._item_tracks.items()}

    def _restore(self, sites: SiteIndex) -> None:
        """Seed the tracks from the persisted states, so a restart keeps every stable clock."""
        assert self._track is not None
        own: tuple[list[int], list[ItemState]] = ([], [])
        items: dict[str, tuple[list[int], list[ItemState]]] = {item: ([], []) for item in self._item_tracks}
        for site, row in self._persisted.items():
            i = sites.position.get(site)
            if i is None:
                continue
            own[0].append(i)
            own[1].append((row.state, row.since, row.candidate, row.last_definite))
            for item, state in row.items.items():
                if item in items:
                    items[item][0].append(i)
                    items[item][1].append(state)
        _set_many(self._track, *own)
        for item, (positions, states) in items.items():
            _set_many(self._item_tracks[item], positions, states)

    def _load_persisted(self) -> None:
        if self._loaded:
            return
        self._persisted = self.verdicts.load_states()
        since = self.clock() - self.config.history_retention
        for t in self.verdicts.transitions(since, regressions_only=True):
            self._regressions.setdefault(t.site, []).append(t.to_json())
        self._regression_counts = self.verdicts.regression_counts()
        self.regressions_total = sum(self._regression_counts.values())
        self._loaded = True

    def _quiet(self, sites: SiteIndex, now: float) -> QuietTime:
        """Declared maintenance over the longest window (judge/quiet.py)."""
        since = now - self.config.max_window - self.matrix.bucket_s
        quiet = QuietTime.from_windows(self.source.maintenance(since), sites.position, len(sites), since, now + 1.0,
                                       self.matrix.bucket_s)
        if self.config.upstream.counts:
            return quiet
        return quiet.with_spans(self.upstream_spans.quiet(sites.position, self.matrix.bucket_s))

    def _report_times(self, sites: SiteIndex) -> np.ndarray:
        times = self.source.report_times()
        return np.array([times.get(site, np.nan) for site in sites.ids], dtype=np.float64)

    def _decide(self, sites: SiteIndex, outcomes: list[Outcome], report_at: np.ndarray, now: float,
                timer: _Timer, quiet: QuietTime) -> tuple[list[VerdictChange], Snapshot]:
        assert self._track is not None
        n = len(sites)
        before, before_items = self._track, self._item_tracks
        held = quiet.held(now)
        freshness = max(3 * self.config.expected_interval, self.config.silence_threshold)
        site_of_row = self.evaluator.site_of_row(sites)
        found = self.fact_finder.compute(n, site_of_row, report_at, now, freshness, self.config.silence_threshold,
                                         self.started_at, self.config.restart_grace)
        up = self.config.upstream
        self.upstream.min_share, self.upstream.min_sites, self.upstream.within = up.min_share, up.min_sites, up.within
        events = self.upstream.apply(found, sites.ids, sites.provinces, sites.upstreams, report_at, now, held)
        self.upstream_spans.record([e.to_json() for e in events], {e.key: e.sites for e in events}, now,
                                   self.config.max_window + self.matrix.bucket_s)
        if not up.counts and events:  # an outage found this pass holds its communes from this pass on
            held = held | (found.upstream >= 0)
        timer.lap("facts")
        settling = held | quiet.held(now, self.config.restart_grace)
        raw, site_held = _held_raw(combine([o.status for o in outcomes if o.criterion.required], n), before,
                                   held, settling)
        site_step = step(before, raw, now, self.config.stable_period, site_held)
        item_raw, item_steps = {}, {}
        for item in self.config.items:
            item_raw[item], item_held = _held_raw(combine([o.status for o in outcomes if o.criterion.item == item],
                                                          n), before_items[item], held, settling)
            item_steps[item] = step(before_items[item], item_raw[item], now, self.config.stable_period, item_held)
        timer.lap("hysteresis")
        changes = self._verdict_changes(sites, outcomes, site_step, now)
        changes += self._fact_changes(sites, found, now)
        self._track = site_step.track
        self._item_tracks = {item: s.track for item, s in item_steps.items()}
        self._persist(sites, before, before_items, site_step, changes, now)
        timer.lap("persist")
        rollup = roll_up(self.config, *self._province_index(sites), self.province_names, self._track.state,
                         {item: t.state for item, t in self._item_tracks.items()}, now,
                         statuses(self._track.state, raw, report_at),
                         {item: statuses(t.state, item_raw[item], report_at) for item, t in self._item_tracks.items()})
        self._save_history(rollup, now)
        timer.lap("rollup")
        snapshot = Snapshot(now, self.config, sites, outcomes, self._track, self._item_tracks, found, report_at,
                            self.matrix.check, [self.evaluator.rows_of(k) for k in range(len(outcomes))],
                            site_of_row, dict(self._regressions), dict(self._regression_counts), rollup,
                            self.province_names, raw, item_raw, quiet.current(now))
        return changes, snapshot

    def _province_index(self, sites: SiteIndex) -> tuple[np.ndarray, list[str]]:
        slugs = list(self.province_names)
        slugs += sorted(set(sites.provinces) - set(slugs))
        where = {slug: i for i, slug in enumerate(slugs)}
        return np.array([where[p] for p in sites.provinces], dtype=np.int64), slugs

    def _verdict_changes(self, sites: SiteIndex, outcomes: list[Outcome], site_step: Any, now: float
                         ) -> list[VerdictChange]:
        changes = []
        for i in np.flatnonzero(site_step.regressed):
            failing = [o for o in outcomes if o.criterion.required and o.status[i] == FAILED]
            reasons = tuple({"criterion": o.criterion.id, **_reason(self.config, o, i).to_json()} for o in failing)
            changes.append(VerdictChange(sites.ids[i], sites.provinces[i], "regression", now,
                                         failing[0].criterion.id if failing else None, None, english(reasons),
                                         tuple(o.criterion.id for o in failing), reasons))
        for i in np.flatnonzero(site_step.recovered):
            changes.append(_event(sites.ids[i], sites.provinces[i], "recovered", now, None,
                                  Reason("recovered", {"stable_s": self.config.stable_period})))
        return changes

    def _fact_changes(self, sites: SiteIndex, found: facts_mod.Facts, now: float) -> list[VerdictChange]:
        changes: list[VerdictChange] = []
        province = dict(zip(sites.ids, sites.provinces, strict=True))
        silent_crit = next((c.id for c in self.config.criteria if c.expr.stat == "report_age"), None)
        power_crit = next((c.id for c in self.config.criteria if c.expr.metric == facts_mod.ON_BATTERY_KEY), None)
        silent = flags(sites.ids, found.silent, np.ones(len(sites), dtype=bool))
        rose, fell = edges(self._memory.silent, silent)
        silence = Reason("site_silent", {"after_s": self.config.silence_threshold})
        changes += [_event(s, province[s], "site_silent", now, silent_crit, silence) for s in rose]
        changes += [VerdictChange(s, province[s], "site_reporting", now, silent_crit) for s in fell]
        battery = flags(sites.ids, found.on_battery == 1.0, ~np.isnan(found.on_battery))
        rose, fell = edges(self._memory.on_battery, battery)
        changes += [_event(s, province[s], "on_battery", now, power_crit, Reason("on_battery")) for s in rose]
        changes += [VerdictChange(s, province[s], "on_mains", now, power_crit) for s in fell]
        down = {(sites.ids[site], self.matrix.check[row]): bool(up == 0)
                for row, site, up in zip(found.device_rows, found.device_site, found.device_up, strict=True)
                if up >= 0}
        rose_d, fell_d = edges(self._memory.device_up, down)  # type: ignore[arg-type]
        changes += [_event(s, province[s], "device_down", now, None, Reason("device_down", {"check": check}), check)
                    for s, check in rose_d]
        changes += [VerdictChange(s, province[s], "device_up", now, None, check) for s, check in fell_d]
        self._memory = Memory({**self._memory.silent, **silent}, {**self._memory.on_battery, **battery},
                              {**self._memory.device_up, **down})  # type: ignore[dict-item]
        return changes

    def _persist(self, sites: SiteIndex, before: Track, before_items: dict[str, Track], site_step: Any,
                 changes: list[VerdictChange], now: float) -> None:
        assert self._track is not None
        dirty = _differs(before, self._track)
        for item, track in self._item_tracks.items():
            dirty |= _differs(before_items[item], track)
        rows = self._state_rows(sites, np.flatnonzero(dirty))
        transitions = self._transitions(sites, before, site_step, changes, now)
        if rows:
            self.verdicts.save_states(rows, now)
        if transitions:
            self.verdicts.add_transitions(transitions)

    def _state_rows(self, sites: SiteIndex, idx: np.ndarray) -> list[StateRow]:
        """The rows of sites ``idx``, columns taken out of the arrays at once (a restart writes every site)."""
        assert self._track is not None
        own = _rows_of(self._track, idx)
        items = {item: _rows_of(t, idx) for item, t in self._item_tracks.items()}
        return [StateRow(sites.ids[i], *own[n], items={item: rows[n] for item, rows in items.items()})
                for n, i in enumerate(idx.tolist())]

    def _transitions(self, sites: SiteIndex, before: Track, site_step: Any, changes: list[VerdictChange],
                     now: float) -> list[Transition]:
        causes = {c.site: c for c in changes if c.kind == "regression"}
        out = []
        for i in np.flatnonzero(site_step.changed):
            site = sites.ids[i]
            regression = bool(site_step.regressed[i])
            cause = causes.get(site)
            # a regression is from completed even when an unknown stretch came between
            was = int(before.last_definite[i]) if regression else int(before.state[i])
            t = Transition(site, sites.provinces[i], now, STATE_NAMES[was],
                           STATE_NAMES[int(site_step.track.state[i])], regression,
                           list(cause.criteria) if cause else [], cause.detail if cause else "",
                           list(cause.reasons) if cause else [])
            out.append(t)
            if regression:
                shown = self._regressions.setdefault(site, [])
                shown.append(t.to_json())
                del shown[:-_MAX_REGRESSIONS_SHOWN]
                self._regression_counts[site] = self._regression_counts.get(site, 0) + 1
                self.regressions_total += 1
        return out

    def _save_history(self, rollup: Any, now: float) -> None:
        day = self.day_of(now)
        self.verdicts.save_history(day, history_rows(rollup), now)
        if self._last_prune_day != day:
            cutoff = now - self.config.history_retention
            self.verdicts.prune(cutoff, self.day_of(cutoff))
            self._last_prune_day = day


def notify(listeners: list[Listener], changes: list[VerdictChange], snapshot: Snapshot) -> list:
    """Call every listener with a pass's changes and views; return the awaitables some of them gave back."""
    pending = []
    views = snapshot.views()
    for listener in list(listeners):
        try:
            result = listener(changes, views)
        except Exception:  # noqa: BLE001 - one bad listener must not stop the others
            log.exception("judge listener %r failed", listener)
            continue
        if inspect.isawaitable(result):
            pending.append(result)
    return pending


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection during a pass.

    A pass allocates hundreds of thousands of short-lived objects (decoded
    rows); each few hundred allocations would trigger a collection that walks
    every long-lived object of the process (a quarter of a steady pass's time
    at 3,000 sites). A pass makes no reference cycles worth collecting, and
    reference counting still frees everything at once; collection resumes
    when the pass ends.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _canonical_provinces() -> dict[str, str]:
    """The 34 provinces shipped with the collector, so "N/34" counts provinces without sites too."""
    return {slug: p.name for slug, p in provinces().items()}


def _reason(config: CriteriaConfig, outcome: Outcome, i: int) -> Reason:
    crit = outcome.criterion
    min_cov = config.min_coverage if crit.min_coverage is None else crit.min_coverage
    low, high = (math.nan, math.nan) if outcome.low is None or outcome.high is None else (
        float(outcome.low[i]), float(outcome.high[i]))
    return criterion_reason(crit, float(outcome.value[i]), int(outcome.why[i]), float(outcome.coverage[i]),
                            min_cov, low, high)


def _event(site: str, province: str, kind: str, at: float, criterion: str | None, why: Reason,
           check: str | None = None) -> VerdictChange:
    """A fact's edge with its reason as data (rendered per reader) and in English (``detail``)."""
    reasons = (why.to_json(),)
    return VerdictChange(site, province, kind, at, criterion, check, english(reasons), reasons=reasons)


def _held_raw(raw: np.ndarray, before: Track, held: np.ndarray, settling: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    """(outcome, held) per site: maintenance holds a site, and a site just out of it while its evidence
    is still too thin; a held site's outcome is what its held state says (status agrees with verdict)."""
    held = held | (settling & (raw == UNKNOWN))
    if not held.any():
        return raw, held
    return np.where(held, raw_from_state(before.state, before.candidate), raw).astype(np.int8), held


def _rows_of(track: Track, idx: np.ndarray) -> list[ItemState]:
    """Each site's (state, since, candidate, last definite) in ``idx``, as ``persist.ItemState``."""
    candidates = [None if c != c else c for c in track.candidate[idx].tolist()]  # NaN: no candidate
    return list(zip(track.state[idx].tolist(), track.since[idx].tolist(), candidates,
                    track.last_definite[idx].tolist(), strict=True))


def _set_many(track: Track, positions: list[int], values: list[ItemState]) -> None:
    """Each site's (state, since, candidate, last definite) put into the track at its position."""
    if not positions:
        return
    state, since, candidate, definite = zip(*values, strict=True)
    at = np.asarray(positions, dtype=np.int64)
    track.state[at] = state
    track.since[at] = since
    track.candidate[at] = [np.nan if c is None else c for c in candidate]
    track.last_definite[at] = definite


def _differs(a: Track, b: Track) -> np.ndarray:
    same_candidate = (a.candidate == b.candidate) | (np.isnan(a.candidate) & np.isnan(b.candidate))
    return (a.state != b.state) | (a.since != b.since) | ~same_candidate | (a.last_definite != b.last_definite)


def _run_coroutines(pending: list) -> None:
    async def gather() -> None:
        await asyncio.gather(*pending, return_exceptions=True)

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(gather())
        return
    for item in pending:  # inside a running loop: let it finish them
        asyncio.ensure_future(item)


__all__ = ["S_COMPLETED", "S_NOT_COMPLETED", "Judge", "PassStats"]
