"""One judge per deployment: collectors sharing a database elect one judge, the others stand by.

Collector replicas over PostgreSQL may all run with ``judge.enabled``: their judge processes compete
for a session advisory lock, and on SQLite two collectors on one data dir for an ``flock``. The
judging loop of two "replicas" runs here (each as the judge process runs it, reporting on its own
pipe) against a real PostgreSQL and a real SQLite file: one judges, the other says it stands by and
never sends a pass, and it takes over once the first stops.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from commune_collector.runtime.childproc import CONTEXT
from commune_collector.runtime.judge_process import (
    PassMessage,
    Standby,
    decode,
    judge_until_stopped,
)
from commune_collector.settings import CollectorSettings
from commune_collector.store import open_store
from testsupport.peers.postgres import PostgresPeer


class Replica:
    """One collector's judging loop in a thread, as its judge process would run it."""

    def __init__(self, settings: CollectorSettings):
        self.receive, send = CONTEXT.Pipe(duplex=False)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=judge_until_stopped, args=(settings, send, self.stop), daemon=True)
        self.thread.start()

    def next_message(self, timeout: float = 60.0) -> PassMessage | Standby:
        if not self.receive.poll(timeout):
            raise AssertionError(f"no message from the judge within {timeout}s")
        return decode(self.receive.recv_bytes())

    def sent_nothing_more(self) -> bool:
        return not self.receive.poll(0)

    def halt(self) -> None:
        self.stop.set()
        self.thread.join(60)
        assert not self.thread.is_alive()


@pytest.fixture(params=["sqlite", "postgres"])
def settings_pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[CollectorSettings, ...]]:
    """Two replicas' settings over one database (one data dir for SQLite: same host, same file)."""
    judge = {"interval": "1s"}
    if request.param == "sqlite":
        one = CollectorSettings.model_validate({"data_dir": str(tmp_path / "shared"), "judge": judge})
        pair = (one, one)
        peer = None
    else:
        peer = PostgresPeer()
        peer.start()
        pair = tuple(CollectorSettings.model_validate({"data_dir": str(tmp_path / name), "judge": judge,
                                                       "database": {"dsn": peer.dsn}}) for name in ("a", "b"))
    store = open_store(pair[0])
    store.migrate()
    store.close()
    try:
        yield pair
    finally:
        if peer is not None:
            peer.stop()


def test_one_replica_judges_the_other_stands_by_then_takes_over(settings_pair: tuple[CollectorSettings, ...]
                                                               ) -> None:
    first = Replica(settings_pair[0])
    try:
        assert isinstance(first.next_message(), PassMessage), "the first replica judges"
        second = Replica(settings_pair[1])
        try:
            standby = second.next_message()
            assert isinstance(standby, Standby) and "another collector" in standby.reason
            assert isinstance(first.next_message(), PassMessage), "the first goes on judging"
            assert second.sent_nothing_more(), "the second never judges while the first does"
            first.halt()
            taken = second.next_message()
            assert isinstance(taken, PassMessage), "the second took over once the first stopped"
        finally:
            second.halt()
    finally:
        first.halt()

