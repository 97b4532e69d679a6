"""A second process for the judge's cold pass: the sites' evidence is read by two processes at once.

A cold pass (the first start, a checkpoint made for other criteria, or none)
reads a day of evidence for every judged check: at 10,000 sites 1.8 million
summaries, and what costs is per-row Python (building each row, decoding its
values), not the database. The collector has two cores and little else to do
while it starts, so the judge shares the work with a helper process.

The inventory's sites are cut into ``CHUNKS`` runs of ids. The judge takes
runs from the front, the helper from the back (the last one is always the
helper's), each claiming the next under one lock, until they meet: neither
waits long for the other, however their speeds differ (the helper first
starts an interpreter; a busy machine slows either). The helper decides what to read with the judge's own criteria (the
same criteria decide the same), builds a matrix of the judge's layout from
its runs and saves it in the checkpoint format; the judge absorbs its rows, a
copy of arrays. A helper that fails costs time, never evidence: the judge then
reads every run it had not read itself.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import tempfile
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from commune_collector.evidence import bucket_of
from commune_collector.judge import Judge
from commune_collector.judge import checkpoint as checkpoint_mod
from commune_collector.judge.criteria import CriteriaConfig
from commune_collector.judge.matrix import KeyedBatch
from commune_collector.judge.source import PartFile
from commune_collector.store.judge_evidence import StoreEvidence

log = logging.getLogger("commune_collector.judge")
CHUNKS = 24  # runs of sites: the last one claimed is all either side may wait for
MIN_SITES = 2_000  # below this, a helper's start (a new interpreter, numpy) costs more than it saves
_claims: Any = None  # in the helper process: the shared [next from the front, end of the back] pair


@dataclass
class ColdHelper:
    """Shares cold passes with a helper process; ``directory`` holds its part file while it is handed over."""

    config: CriteriaConfig
    directory: Path
    min_sites: int = MIN_SITES

    def start(self, source: StoreEvidence, now: float, horizon: float) -> RunningHelper | None:
        """Start the helper before the judge decides what to read (the helper decides for itself)."""
        sites = sorted(site.id for site in source.inventory())
        if len(sites) < max(self.min_sites, 2) or not source.holds_evidence(horizon):
            return None  # a small fleet, or a new one with nothing to read yet
        edges = sorted({sites[len(sites) * n // CHUNKS] for n in range(1, CHUNKS)})
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            for stale in self.directory.glob("judge-part-*"):  # a helper abandoned by a pass that failed
                stale.unlink(missing_ok=True)
            fd, out = tempfile.mkstemp(prefix="judge-part-", suffix=".tmp", dir=self.directory)
            os.close(fd)
        except OSError as exc:
            log.warning("judge: no helper process for this cold pass (%s): reading every site here", exc)
            return None
        context = multiprocessing.get_context("spawn")  # no fork of a process with threads and open databases
        claims = context.Array("i", [0, len(edges) + 1])
        pool = ProcessPoolExecutor(1, mp_context=context, initializer=_share, initargs=(claims,))
        future = pool.submit(read_part, source.db.dialect, source.bucket_seconds, self.config, edges, now, horizon,
                             out)
        log.info("judge: a helper process shares the reading of %d sites (%d runs)", len(sites), len(edges) + 1)
        return RunningHelper(source, edges, claims, bucket_of(now, int(source.bucket_seconds)), horizon, Path(out),
                             future, pool)


@dataclass
class RunningHelper:
    source: StoreEvidence
    edges: list[str]  # run n covers sites from edges[n-1] (inclusive) to edges[n] (exclusive)
    claims: Any  # multiprocessing Array: [the judge's next run, the first run the helper has claimed]
    current: float
    horizon: float
    out: Path
    future: Future[int]
    pool: ProcessPoolExecutor

    def own_runs(self) -> Iterator[KeyedBatch]:
        """The runs the judge claims, from the front, read here."""
        while (run := _claim(self.claims, front=True)) is not None:
            yield from self.source.window(self.horizon, self.current, *_bounds(self.edges, run))

    def result(self) -> Iterator[PartFile | KeyedBatch]:
        """The helper's part; if it failed, every run the judge did not read, read here."""
        try:
            buckets = self.future.result()
        except Exception as exc:  # noqa: BLE001 - any failure of the helper: read its runs here instead
            log.warning("judge: the helper process failed (%s); reading its sites here", exc)
            self.out.unlink(missing_ok=True)
            read_here = int(self.claims[0])
            yield from self.source.window(self.horizon, self.current,
                                          since=self.edges[read_here - 1] if read_here else None)
            return
        finally:
            self.pool.shutdown(wait=True)
        yield PartFile(self.out, buckets)

    def abandon(self) -> None:
        """The pass failed before taking the part: stop waiting (its file goes at the next helper's start)."""
        self.pool.shutdown(wait=False, cancel_futures=True)


def _claim(claims: Any, front: bool) -> int | None:
    """The next unclaimed run from the front (the judge, never the last run) or the back (the helper);
    None once they meet."""
    with claims.get_lock():
        if front and claims[0] < claims[1] - 1 or not front and claims[0] < claims[1]:
            if front:
                claims[0] += 1
                return int(claims[0] - 1)
            claims[1] -= 1
            return int(claims[1])
        return None


def _bounds(edges: list[str], run: int) -> tuple[str | None, str | None]:
    """(below, since) of a run, as ``StoreEvidence.window`` takes them."""
    return (edges[run] if run < len(edges) else None), (edges[run - 1] if run else None)


def _share(claims: Any) -> None:
    global _claims
    _claims = claims


class _DialectOnly:
    """What ``StoreEvidence`` uses of a store, in a process that has only its dialect (no maintenance)."""

    def __init__(self, dialect: Any):
        self.dialect_impl = dialect

    def list_windows(self, since: float) -> list:
        return []


def read_part(dialect: Any, bucket_seconds: float, config: CriteriaConfig, edges: list[str], now: float,
              horizon: float, out: str) -> int:
    """In the helper process: read the runs it claims from the back into a matrix of the judge's layout and
    save it to ``out``."""
    source = StoreEvidence(_DialectOnly(dialect), bucket_seconds, read_only=True)
    try:
        judge = Judge(config, source)
        source.decide_from(judge.keep, None)
        current = bucket_of(now, int(bucket_seconds))
        buckets = 0
        while (run := _claim(_claims, front=False)) is not None:
            buckets += judge.matrix.load(source.window(horizon, current, *_bounds(edges, run)), now)
        checkpoint_mod.save(judge.matrix, Path(out), checkpoint_mod.PART_STAMP, {"buckets": buckets})
        return buckets
    finally:
        source.close()
