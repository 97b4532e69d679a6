"""Drive a fleet through the collector's ingest API: backfill a day, then report live every interval.

Every site sends what a real agent sends: ``Report`` bodies of the wire
format, gzip-compressed, with its own bearer token, a random instance id and
gap-free sequence numbers. The backfill carries a day of rounds two per hour
(enough for every window's coverage, at a fiftieth of the live rate's cost),
so the first judge pass already has a day to judge; then each site reports
the rounds due since its last report every ``interval`` at its own phase.
Connections are shared between sites (a pool), which a real fleet would not
do; the collector does the same work per report either way.
"""

from __future__ import annotations

import asyncio
import gzip
import heapq
import json
import logging
import os
import random
import resource
import secrets
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from commune_collector import __version__
from commune_collector.simulate.fleet import HEALTHY, CheckSpec, Fleet, SimSite
from commune_common.wire import CheckResult, Report, encode_report

log = logging.getLogger(__name__)
BACKFILL_SPAN = 25 * 3600.0  # a 24h window reads the current hourly bucket and the 24 before
BACKFILL_STEP = 1800.0  # two rounds per hour: each hourly bucket then tells its rounds' spacing
MAX_RESULTS = 4000
RETRIES = 4


@dataclass
class Stats:
    started: float = field(default_factory=time.monotonic)
    reports: int = 0
    results: int = 0
    acked: int = 0
    duplicates: int = 0
    errors: Counter = field(default_factory=Counter)
    first_error: str = ""

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        errors = ", ".join(f"{k} {v}" for k, v in sorted(self.errors.items())) or "none"
        return (f"{self.acked:,} reports acked ({self.results:,} results), {self.acked / elapsed:,.0f} reports/s, "
                f"errors: {errors}")


@dataclass
class SiteRun:
    """One site's sending state: token, instance, next sequence number, next round of each check."""

    site: SimSite
    token: str
    instance: str
    rng: random.Random
    seq: int = 0
    next_round: list[float] = field(default_factory=list)

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq


class Driver:
    """Sends a fleet's reports; the clock is injectable so a test can run it against any time."""

    def __init__(self, fleet: Fleet, url: str, tokens: dict[str, str], *, interval: float = 30.0,
                 concurrency: int = 32, clock: Callable[[], float] = time.time, timeout: float = 30.0):
        self.fleet = fleet
        self.url = url.rstrip("/") + "/api/v1/reports"
        self.history_sent: set[str] = set()  # sites whose day of history is in (they report live since)
        self.interval = interval
        self.clock = clock
        self.stats = Stats()
        self._sem = asyncio.Semaphore(concurrency)
        self._client = httpx.AsyncClient(timeout=timeout, limits=httpx.Limits(max_connections=concurrency,
                                                                               max_keepalive_connections=concurrency))
        stamp = f"{int(fleet.start):x}"
        self.runs = [SiteRun(s, tokens[s.id], f"sim-{stamp}-{secrets.token_hex(4)}",
                             random.Random(f"{fleet.seed}:{s.id}:rounds")) for s in fleet.sites if s.id in tokens]
        self._index = {run.site.id: k for k, run in enumerate(self.runs)}
        self._heap: list[tuple[float, int]] = []

    async def close(self) -> None:
        await self._client.aclose()

    # -- sending ---------------------------------------------------------------------------

    async def send(self, run: SiteRun, results: list[CheckResult], sent_at: float) -> None:
        report = Report(site=run.site.id, instance=run.instance, seq=run.next_seq(),
                        sent_at=round(sent_at + run.site.skew, 3), agent_version=f"simulator-{__version__}",
                        results=results)
        body = gzip.compress(encode_report(report), compresslevel=1)
        headers = {"Authorization": f"Bearer {run.token}", "Content-Type": "application/json",
                   "Content-Encoding": "gzip"}
        async with self._sem:
            self.stats.reports += 1
            self.stats.results += len(results)
            for attempt in range(RETRIES):
                try:
                    reply = await self._client.post(self.url, content=body, headers=headers)
                except httpx.HTTPError as exc:
                    self._error(type(exc).__name__, str(exc))
                    await asyncio.sleep(min(2 ** attempt, 10))
                    continue
                if reply.status_code == 200:
                    self.stats.acked += 1
                    self.stats.duplicates += bool(reply.json().get("duplicate"))
                    return
                self._error(str(reply.status_code), reply.text[:300])
                if reply.status_code not in (429, 503):
                    return
                await asyncio.sleep(float(reply.headers.get("Retry-After", "2")))

    def _error(self, reason: str, detail: str) -> None:
        self.stats.errors[reason] += 1
        if not self.stats.first_error:
            self.stats.first_error = f"{reason}: {detail}"
            log.warning("simulator: first error %s: %s", reason, detail)

    # -- backfill --------------------------------------------------------------------------

    def backfill_rounds(self, run: SiteRun, start: float) -> list[CheckResult]:
        """The site's history up to ``start``: two rounds an hour for a day (a new install: every round)."""
        site, out = run.site, []
        for spec in site.checks:
            step = spec.interval if site.installed_at > start - BACKFILL_SPAN else BACKFILL_STEP
            t = max(start - BACKFILL_SPAN, site.installed_at) + spec.phase * (step / spec.interval)
            while t < start:
                if site.reporting(t, self.fleet):
                    out.append(self.fleet.rounds(site, spec, t, run.rng))
                t += step
        return out

    async def backfill(self, progress: Callable[[str], None] = lambda line: None) -> None:
        """Send every site's day of history; each site joins the live schedule as soon as its own is in."""
        start = self.fleet.start
        tasks, batch = [], []
        for k, run in enumerate(backfill_order(self.runs)):
            results = self.backfill_rounds(run, start)
            for i in range(0, len(results), MAX_RESULTS):
                tasks.append(asyncio.ensure_future(self.send(run, results[i:i + MAX_RESULTS], start)))
            batch.append(run)
            if len(tasks) >= 64:
                await asyncio.gather(*tasks)
                self._go_live(batch)
                tasks, batch = [], []
                progress(f"backfill {k + 1:,}/{len(self.runs):,} sites: {self.stats.line()}")
        await asyncio.gather(*tasks)
        self._go_live(batch)
        progress(f"backfill done: {len(self.runs):,} sites, {self.stats.line()}")

    def _go_live(self, runs: list[SiteRun]) -> None:
        """From now on these sites report every interval (their first report carries what is due since start)."""
        now = self.clock()
        self.history_sent.update(run.site.id for run in runs)
        for run in runs:
            run.next_round = [_first_after(spec, self.fleet.start) for spec in run.site.checks]
            heapq.heappush(self._heap, (now + run.rng.uniform(0, self.interval), self._index[run.site.id]))

    # -- live ------------------------------------------------------------------------------

    def due_rounds(self, run: SiteRun, now: float) -> list[CheckResult]:
        out = []
        for k, spec in enumerate(run.site.checks):
            t = run.next_round[k]
            while t <= now:
                if run.site.reporting(t, self.fleet):
                    out.append(self.fleet.rounds(run.site, spec, t, run.rng))
                t += spec.interval
            run.next_round[k] = t
        return out

    async def live(self, until: float, on_tick: Callable[[], None] = lambda: None) -> None:
        """Every live site reports every ``interval`` at its own phase until ``until`` (true time).

        Runs alongside ``backfill``, which adds the sites as their history is in."""
        heap = self._heap
        pending: set[asyncio.Task] = set()
        while self.clock() < until:
            now = self.clock()
            while heap and heap[0][0] <= now:
                due, k = heapq.heappop(heap)
                run = self.runs[k]
                heapq.heappush(heap, (due + self.interval, k))
                results = self.due_rounds(run, now)
                if results and run.site.reporting(now, self.fleet):
                    task = asyncio.ensure_future(self.send(run, results, now))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
            on_tick()
            await asyncio.sleep(max(0.0, min(heap[0][0] - self.clock(), 0.5)) if heap else 0.5)
        if pending:
            await asyncio.gather(*pending)


def backfill_order(runs: list[SiteRun]) -> list[SiteRun]:
    """Incident sites first, then the healthy ones a province at a time in turn, so that while the
    backfill is still running every province and every incident already has verdicts to show."""
    turn: dict[str, int] = {}

    def key(run: SiteRun) -> tuple[bool, int, str]:
        if run.site.kind != HEALTHY:
            return False, 0, run.site.id
        turn[run.site.province] = turn.get(run.site.province, -1) + 1
        return True, turn[run.site.province], run.site.id

    return sorted(runs, key=key)


def _first_after(spec: CheckSpec, start: float) -> float:
    """The check's first live round: its phase in the first interval from ``start``."""
    return start + spec.phase


# -- tokens, truth, usage -------------------------------------------------------------------


def issue_tokens(store: object, site_ids: Sequence[str], progress: Callable[[int, int], None]) -> dict[str, str]:
    """A fresh token per simulated site (older ones revoked): hashes in the store, secrets only in memory."""
    from commune_collector.auth import new_token
    tokens = {}
    now = time.time()
    for k, site in enumerate(site_ids):
        store.revoke_tokens(site, now)  # type: ignore[attr-defined]
        token, record = new_token(site)
        store.add_token(record)  # type: ignore[attr-defined]
        tokens[site] = token
        progress(k + 1, len(site_ids))
    return tokens


def truth_document(fleet: Fleet, at: float, history_sent: set[str] | None = None) -> dict:
    """What the collector must conclude about every simulated site at ``at``; ``history_sent`` (None: all)
    says whose day of history the collector has been sent yet (a site still waiting cannot be judged)."""
    sites = {}
    for s in fleet.sites:
        e = fleet.expectation(s, at)
        sites[s.id] = {"province": s.province, "kind": e.kind, "states": list(e.states), "cause": e.cause,
                       "note": e.note, "history_sent": history_sent is None or s.id in history_sent}
    return {"at": at, "seed": fleet.seed, "start": fleet.start, "backbone_province": fleet.backbone_province,
            "power_province": fleet.power_province, "sites": sites}


def write_truth(fleet: Fleet, path: Path, at: float, history_sent: set[str] | None = None) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(truth_document(fleet, at, history_sent), ensure_ascii=False, indent=1),
                   encoding="utf-8")
    os.replace(tmp, path)


def usage() -> tuple[float, float]:
    """CPU seconds used by this process and its peak RSS in MiB."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024.0


def stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
