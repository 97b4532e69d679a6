"""The judge in a process of its own, and ``JudgeProxy``: what the server sees of it.

A pass over a national inventory is CPU-bound Python. In the server's
process it shared one GIL (and the SQLite connection pool) with ingest and
pushed ingest's latency up (docs/benchmarks.md, "Ingest" has the figures).
So the server runs the judge in a child process (``judge.process``, on by
default), which reads the evidence, judges, persists verdicts and saves its
checkpoint exactly as the in-process ``Judge`` does. After each pass it sends
the server the new ``Snapshot`` over a pipe, pickled, leaving out what the
server already holds: the criteria and the inventory when they did not
change, and the check ids it sent before (that list only grows). The server
thus pays for reading a pass rather than for the pass itself.

``JudgeProxy`` stands where a ``Judge`` stands in the collector's state:
``snapshot``, ``last_stats``, ``passes``, ``history()`` (read from the
database), listeners (alerting) called after each received pass. A child
that dies is restarted (``childproc.supervise``); until its first pass the
server keeps serving the last snapshot it received.

The child judges only while it holds the judge's lease (one judge per
deployment: ``Dialect.take_judge_lease``, a PostgreSQL advisory lock or a
file lock beside the SQLite database). Without it, it tells the server it
stands by (``Standby``: the verdict API says another replica judges) and
asks again every interval, taking over when the judging replica stops.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import pickle
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any
from zoneinfo import ZoneInfo

from commune_collector.judge.criteria import CriteriaConfig
from commune_collector.judge.engine import Judge, Listener, PassStats, _canonical_provinces, notify
from commune_collector.judge.evaluate import SiteIndex
from commune_collector.judge.events import VerdictChange
from commune_collector.judge.reads import VerdictReads
from commune_collector.judge.verdict import Snapshot
from commune_collector.runtime.childproc import CONTEXT, child_setup, supervise
from commune_collector.runtime.judge_build import CHECKPOINT_FILE, build_judge
from commune_collector.store import open_store
from commune_collector.store.sql import Lease
from commune_collector.store.verdicts import SqlVerdictStore

log = logging.getLogger("commune_collector.judge")
POLL_S = 1.0
JUDGE_PROCESS_NAME = "commune-judge"  # ps/top: 15 characters at most
# a pass is batch work: under contention the kernel gives ingest's requests the CPU first (the judge has
# 30 s for a 1-2 s pass, a request 250 ms at p99)
JUDGE_NICE = 10


@dataclass
class PassMessage:
    """One pass, child to server. ``None`` for config/sites: unchanged since the previous message."""

    snapshot: Snapshot  # without config, sites and check_ids
    config: CriteriaConfig | None
    sites: SiteIndex | None
    checks_from: int  # the check ids below this position were sent before
    checks: list[str]
    changes: list[VerdictChange]
    stats: PassStats
    regressions_total: int


STANDBY_REASON = "another collector replica holds the judge's lease and judges; this one takes over if it stops"


@dataclass
class Standby:
    """Child to server: this collector does not judge while another holds the lease."""

    reason: str


class PassSender:
    """The child's end: remembers what the server already holds, so a message carries only what is new."""

    def __init__(self, conn: Connection):
        self.conn = conn
        self._config: CriteriaConfig | None = None
        self._sites: SiteIndex | None = None
        self._checks_sent = 0

    def message(self, judge: Judge, snapshot: Snapshot, changes: list[VerdictChange]) -> PassMessage:
        checks = snapshot.check_ids
        return PassMessage(
            snapshot=dataclasses.replace(snapshot, config=None, sites=None, check_ids=None),  # type: ignore[arg-type]
            config=None if snapshot.config is self._config else snapshot.config,
            sites=None if snapshot.sites is self._sites else snapshot.sites,
            checks_from=self._checks_sent, checks=checks[self._checks_sent:], changes=changes,
            stats=judge.last_stats, regressions_total=judge.regressions_total)

    def encode(self, judge: Judge, snapshot: Snapshot, changes: list[VerdictChange]) -> bytes:
        """The pass as bytes for the server (``decode`` reads them); what it carries counts as sent."""
        message = self.message(judge, snapshot, changes)
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        self._config, self._sites = snapshot.config, snapshot.sites
        self._checks_sent = message.checks_from + len(message.checks)
        return data

    def send(self, judge: Judge, snapshot: Snapshot, changes: list[VerdictChange]) -> None:
        self.conn.send_bytes(self.encode(judge, snapshot, changes))


def decode(data: bytes) -> PassMessage | Standby:
    """A pass from ``PassSender.encode`` (or a ``Standby``); the pipe only carries what our own child wrote."""
    message = pickle.loads(data)  # noqa: S301 - our child process, over a pipe it inherited
    if not isinstance(message, PassMessage | Standby):
        raise OSError(f"the judge process sent {type(message).__name__}, not a PassMessage")
    return message


class PassReceiver:
    """The server's end: rebuilds whole snapshots from the messages."""

    def __init__(self) -> None:
        self.config: CriteriaConfig | None = None
        self.sites: SiteIndex | None = None
        self.checks: list[str] = []

    def snapshot(self, message: PassMessage) -> Snapshot:
        if message.config is not None:
            self.config = message.config
        if message.sites is not None:
            self.sites = message.sites
        if message.checks_from != len(self.checks):
            # a new child starts from 0; older snapshots keep the list they share
            self.checks = self.checks[:message.checks_from]
        self.checks.extend(message.checks)
        if self.config is None or self.sites is None:
            raise ValueError("the judge process sent a pass before its criteria and inventory")
        snapshot = message.snapshot
        snapshot.config, snapshot.sites, snapshot.check_ids = self.config, self.sites, self.checks
        return snapshot


# -- the child ------------------------------------------------------------------------------


def judge_until_stopped(settings: Any, conn: Connection, stop: Any) -> None:
    """Judge every ``judge.interval`` while this process holds the judge's lease, sending each pass on
    ``conn``; checkpoint on the way out. Without the lease (another collector judges), stand by."""
    store = open_store(settings)
    try:
        taken = _wait_for_lease(store, conn, stop, settings.judge.interval)
        if taken is None:
            return
        lease, waited = taken
        try:
            _judge_while_leading(settings, store, conn, stop, lease, waited)
        finally:
            lease.release()
    finally:
        store.close()


def _wait_for_lease(store: Any, conn: Connection, stop: Any, interval: float) -> tuple[Lease, bool] | None:
    """The lease once no other collector's judge holds it, and whether another judged meanwhile (None if
    stopped first). While another holds it, the server is told so once: its verdict API says another
    replica judges instead of "not yet"."""
    told = False
    while not stop.is_set():
        try:
            lease = store.dialect_impl.take_judge_lease()
        except Exception as exc:  # noqa: BLE001 - the database may come back
            log.warning("judge: cannot ask for the judge's lease (%s); retrying", exc)
            lease = None
        if lease is not None:
            return lease, told
        if not told:
            log.info("judge: another collector holds the judge's lease; standing by to take over")
            try:
                conn.send_bytes(pickle.dumps(Standby(STANDBY_REASON), protocol=pickle.HIGHEST_PROTOCOL))
            except (BrokenPipeError, ConnectionResetError):
                return None
            told = True
        stop.wait(interval)
    return None


def _judge_while_leading(settings: Any, store: Any, conn: Connection, stop: Any, lease: Lease,
                         waited: bool) -> None:
    if waited:
        # the other judge trimmed the backfill log up to its own checkpoint: ours would miss those buckets
        (settings.data_dir / CHECKPOINT_FILE).unlink(missing_ok=True)
        log.info("judge: took over as the deployment's judge; reading the whole window once")
    judge = build_judge(settings.judge, store, settings.data_dir)
    if judge is None:
        return
    sender = PassSender(conn)
    try:
        while not stop.is_set():
            if not lease.held():
                log.error("judge: lost the judge's lease (database session gone); stopping, another may take over")
                break
            try:
                started = time.perf_counter()
                snapshot, changes = judge.pass_once()
                judged = time.perf_counter()
                sender.send(judge, snapshot, changes)
                log.debug("judge pass: %d sites in %.2fs (%s), %d changes, sent in %.3fs", len(snapshot.sites),
                          judged - started, " ".join(f"{k} {v:.2f}" for k, v in judge.last_stats.seconds.items()),
                          len(changes), time.perf_counter() - judged)
                judge.pack_hours()  # between passes: the next cold pass reads packs
            except (BrokenPipeError, ConnectionResetError):
                log.info("judge: the server closed the pipe; stopping")
                break
            except Exception:  # noqa: BLE001 - the next pass may well succeed (database back)
                log.exception("judge pass failed")
            stop.wait(settings.judge.interval)
    finally:
        judge.close()


def _child_main(settings: Any, conn: Connection) -> None:
    """Entry point of the server's judge process."""
    judge_until_stopped(settings, conn, child_setup(JUDGE_PROCESS_NAME, settings.log_level, JUDGE_NICE))


# -- the server -----------------------------------------------------------------------------


class JudgeProxy(VerdictReads):
    """Looks like a ``Judge`` to the API, status page, /metrics and alerting; the passes run in a child."""

    def __init__(self, settings: Any, store: Any):
        self.settings = settings
        self.config = settings.judge.criteria()
        self.tz = ZoneInfo(settings.judge.timezone)
        self.clock = time.time
        self.verdicts = SqlVerdictStore.for_store(store)
        self.province_names = _canonical_provinces()
        self.listeners: list[Listener] = []
        self.snapshot: Snapshot | None = None
        self.last_stats = PassStats()
        self.passes = 0
        self.regressions_total = 0
        self.process_starts = 0
        self.standby: str | None = None  # why this collector does not judge (another holds the lease)
        self._receiver = PassReceiver()
        self._pipe: tuple[Connection, Connection] | None = None

    def add_listener(self, listener: Listener) -> None:
        self.listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        if listener in self.listeners:
            self.listeners.remove(listener)

    async def run(self, stop: asyncio.Event, interval: float | None = None) -> None:
        """Keep the judge process running until ``stop``; take in its passes meanwhile."""
        await supervise("judge", self._spawn, stop, self._attend)

    def close(self) -> None:
        close = getattr(self.verdicts, "close", None)
        if callable(close):
            close()

    def _spawn(self) -> BaseProcess:
        receive, send = CONTEXT.Pipe(duplex=False)
        self._pipe = (receive, send)
        return CONTEXT.Process(target=_child_main, args=(self.settings, send), name="commune-collector-judge")

    async def _attend(self, child: BaseProcess, stop: asyncio.Event) -> None:
        assert self._pipe is not None
        receive, send = self._pipe
        send.close()  # the child holds the only writer: its death reads as EOF here
        self.process_starts += 1
        self._receiver = PassReceiver()
        try:
            while not stop.is_set():
                if not await asyncio.to_thread(receive.poll, POLL_S):
                    if not child.is_alive():
                        return
                    continue
                try:
                    message = await asyncio.to_thread(_receive, receive)
                except (EOFError, OSError):
                    return
                try:
                    await self._take(message)
                except Exception:  # noqa: BLE001 - a bad message costs one pass, not the server's judging
                    log.exception("judge: cannot take a pass from the judge process")
        finally:
            receive.close()  # a child blocked sending gets EPIPE and stops

    async def _take(self, message: PassMessage | Standby) -> None:
        if isinstance(message, Standby):
            self.standby = message.reason
            return
        self.standby = None
        snapshot = self._receiver.snapshot(message)
        self.snapshot = snapshot
        self.last_stats = message.stats
        self.passes += 1
        self.regressions_total = message.regressions_total
        pending = await asyncio.to_thread(notify, self.listeners, message.changes, snapshot)
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


def _receive(conn: Connection) -> PassMessage | Standby:
    return decode(conn.recv_bytes())
