"""One connection, one thread, group commit: how every write reaches the database.

SQLite allows one writer at a time, and an fsync per report would cap ingest
at a few hundred reports a second at best. So every write is a *job* queued
here; the thread takes whatever is queued (up to ``max_group``), runs each job
inside its own SAVEPOINT (one bad job cannot spoil the others) and COMMITs
them together: one fsync for the whole group. A job's future resolves only
after that COMMIT, which is what lets the API answer 200 only for durable
data. PostgreSQL uses the same writer so both stores behave alike.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import AbstractContextManager, nullcontext
from typing import Any, TypeVar

from commune_collector.store.base import StoreBusy, StoreUnavailable, WriteStats

log = logging.getLogger("commune_collector.store")
T = TypeVar("T")
Job = Callable[[Any], Any]
_STOP = object()


class GroupWriter:
    """Runs write jobs on one connection in one thread, committing them in groups.

    ``gate`` is held around each group's transaction (see ``Dialect.write_gate``).
    """

    def __init__(self, connect: Callable[[], Any], begin_sql: str, *, max_pending: int, max_group: int,
                 is_disconnect: Callable[[BaseException], bool], name: str = "store-writer",
                 gate: AbstractContextManager[Any] | None = None):
        self._connect = connect
        self._begin_sql = begin_sql
        self._gate = gate if gate is not None else nullcontext()
        self.stats = WriteStats()
        self._max_group = max_group
        self._is_disconnect = is_disconnect
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_pending)
        self._conn: Any = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[Any], T]) -> Future[T]:
        """Queue a job without waiting; StoreBusy when the queue is full (the API answers 503)."""
        future: Future[T] = Future()
        try:
            self._queue.put_nowait((job, future))
        except queue.Full:
            raise StoreBusy("too many writes queued") from None
        return future

    def call(self, job: Callable[[Any], T], timeout: float | None = None) -> T:
        """Queue a job, waiting for room if need be, and return its result once committed."""
        future: Future[T] = Future()
        self._queue.put((job, future))
        return future.result(timeout)

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def close(self) -> None:
        """Commit what is queued, then stop the thread and close the connection."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()

    # -- the thread ------------------------------------------------------------

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            group = [first]
            while len(group) < self._max_group:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                group.append(item)
            waiting = time.perf_counter()
            with self._gate:
                done = self._commit_group(group, waiting)
            _deliver(done)  # after the gate: a caller woken by its answer never finds it still held
        self._close_conn()

    def _commit_group(self, group: list[tuple[Job, Future[Any]]], waiting: float
                      ) -> list[tuple[Future[Any], Any, BaseException | None]]:
        """Run and commit one group; the jobs' answers, for the caller to deliver once the gate is free."""
        done: list[tuple[Future[Any], Any, BaseException | None]] = []
        try:
            conn = self._connection()
            conn.execute(self._begin_sql)
            holding = time.perf_counter()
            for job, future in group:
                if not future.set_running_or_notify_cancel():
                    continue  # the caller gave up before we started: nothing to do
                done.append(self._run_job(conn, job, future))
            conn.execute("COMMIT")
            self._count(len(group), holding - waiting, time.perf_counter() - holding)
        except Exception as exc:  # the group is not durable: every caller must retry
            self._rollback_after(exc)
            error = exc if isinstance(exc, StoreUnavailable) else StoreUnavailable(f"write failed: {exc}")
            return [(future, None, error) for _, future in group
                    if not future.done() and (future.running() or future.set_running_or_notify_cancel())]
        return done

    def _count(self, jobs: int, waited: float, held: float) -> None:
        stats = self.stats
        stats.groups += 1
        stats.jobs += jobs
        stats.lock_wait_seconds += waited
        stats.held_seconds += held

    def _run_job(self, conn: Any, job: Job, future: Future[Any]) -> tuple[Future[Any], Any, BaseException | None]:
        conn.execute("SAVEPOINT job")
        try:
            value = job(conn)
        except Exception as exc:
            if self._is_disconnect(exc):
                raise
            conn.execute("ROLLBACK TO SAVEPOINT job")
            conn.execute("RELEASE SAVEPOINT job")
            return future, None, exc
        conn.execute("RELEASE SAVEPOINT job")
        return future, value, None

    def _connection(self) -> Any:
        if self._conn is None:
            try:
                self._conn = self._connect()
            except Exception as exc:
                raise StoreUnavailable(f"cannot connect: {exc}") from exc
        return self._conn

    def _rollback_after(self, exc: BaseException) -> None:
        log.warning("write group failed: %s", exc)
        if self._conn is None:
            return
        try:
            self._conn.execute("ROLLBACK")
        except Exception:  # the connection is gone; open a fresh one next time
            self._close_conn()
            return
        if self._is_disconnect(exc):
            self._close_conn()

    def _close_conn(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass
            self._conn = None


def _deliver(done: list[tuple[Future[Any], Any, BaseException | None]]) -> None:
    for future, value, error in done:
        if error is None:
            future.set_result(value)
        else:
            future.set_exception(error)
