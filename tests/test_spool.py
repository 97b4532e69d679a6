"""The agent's on-disk queue: durability, frozen sequence numbers, coalescing, bounds, corruption."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from commune_agent.spool import SCHEMA_VERSION, DropCounts, Spool, SpoolError
from commune_common.wire import CheckResult

MiB = 1024 * 1024


def result(check: str = "link/fiber/icmp/dc", ts: float = 1.0, **values: float) -> CheckResult:
    return CheckResult(check=check, probe="icmp", ts=ts, ok=True, duration_s=0.01,
                       labels={"link": "fiber"}, values=values or {'icmp_rtt_seconds{stat="avg"}': 0.012})


def batch(start: float, n: int = 3) -> list[CheckResult]:
    return [result(f"c{i}", start + i) for i in range(n)]


class Clock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def spool(tmp_path: Path, clock: Clock):
    s = Spool(tmp_path / "spool.db", max_bytes=64 * MiB, max_age=7 * 86400, clock=clock)
    yield s
    s.close()


def keys(results: list[CheckResult]) -> list[tuple[str, float]]:
    return [(r.check, r.ts) for r in results]


def test_round_trip_claim_and_ack(spool: Spool) -> None:
    [row] = spool.append(batch(10))
    group = spool.claim(row)
    assert group is not None and group.seq == 1 and group.row_ids == (row,)
    assert group.results == batch(10)
    assert spool.stats.reports == 1 and spool.stats.results == 3 and spool.stats.bytes > 0
    assert spool.ack(group.seq) == 3
    assert spool.stats.reports == 0 and spool.claim(row) is None and spool.pending_results() == []


def test_sqlite_settings_are_the_durable_ones(spool: Spool) -> None:
    db = sqlite3.connect(spool.path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert spool._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    db.close()


def test_big_batch_is_split_into_rows_of_max_results(spool: Spool) -> None:
    ids = spool.append(batch(0, 7), max_results=3)
    assert len(ids) == 3
    assert [spool.claim(i).results for i in ids] == [batch(0, 7)[0:3], batch(0, 7)[3:6], batch(0, 7)[6:7]]


def test_numbered_report_is_frozen_and_resent_identically(spool: Spool) -> None:
    a, b = spool.append(batch(0)), spool.append(batch(10))
    first = spool.claim_oldest(max_results=100, max_bytes=MiB)
    assert first is not None and first.row_ids == (a[0], b[0])  # coalesced
    spool.append(batch(20))  # newer rows never join a numbered report
    again = spool.claim_oldest(max_results=100, max_bytes=MiB)
    assert again == first
    assert spool.claim(a[0]) == first


def test_released_rows_may_coalesce_and_leave_no_gap_in_numbers(spool: Spool) -> None:
    a = spool.append(batch(0))[0]
    one = spool.claim(a)
    spool.begin_attempt(one.seq)
    assert spool.release(one.seq)  # the connection was never made: nobody saw number 1
    b = spool.append(batch(10))[0]
    two = spool.claim_oldest(max_results=100, max_bytes=MiB)
    assert two.seq == one.seq == 1 and two.row_ids == (a, b)
    three = spool.claim(spool.append(batch(20))[0])
    assert three.seq == 2
    spool.begin_attempt(two.seq)
    assert spool.release(two.seq)  # released, but not the last number given out: not reused
    assert spool.claim_oldest(max_results=100, max_bytes=MiB).seq == 3


def test_a_report_that_may_have_arrived_is_never_renumbered(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "spool.db"
    s = Spool(path, max_bytes=MiB, max_age=3600, clock=clock)
    group = s.claim(s.append(batch(0))[0])
    s.begin_attempt(group.seq)  # the POST left; then the process died (no answer recorded)
    s.close()
    s = Spool(path, max_bytes=MiB, max_age=3600, clock=clock)
    s.begin_attempt(group.seq)
    assert s.release(group.seq) is False  # this try did not connect, but the first may have arrived
    assert s.claim_oldest(100, MiB) == group
    fresh = s.claim(s.append(batch(10))[0])
    s.begin_attempt(fresh.seq)
    assert s.release(fresh.seq) is True  # its only try never connected
    s.close()


def test_coalescing_respects_result_and_byte_limits(spool: Spool) -> None:
    ids = [spool.append(batch(i * 10))[0] for i in range(5)]
    row_bytes = spool.stats.bytes // 5
    group = spool.claim_oldest(max_results=6, max_bytes=MiB)
    assert group.row_ids == tuple(ids[:2])  # 3 + 3 results, a third row would make 9
    spool.ack(group.seq)
    group = spool.claim_oldest(max_results=100, max_bytes=int(row_bytes * 1.5))
    assert group.row_ids == tuple(ids[2:3])
    spool.ack(group.seq)
    assert spool.claim_oldest(max_results=100, max_bytes=10) is None  # nothing fits the budget
    forced = spool.claim_oldest(max_results=100, max_bytes=10, force=True)
    assert forced is not None and len(forced.row_ids) == 1  # ... but progress is guaranteed


def test_frozen_group_over_budget_waits_unless_forced(spool: Spool) -> None:
    ids = [spool.append(batch(i * 10))[0] for i in range(2)]
    group = spool.claim_oldest(max_results=100, max_bytes=MiB)
    assert group.row_ids == tuple(ids)
    assert spool.claim_oldest(max_results=100, max_bytes=group.stored_bytes - 1) is None
    assert spool.claim_oldest(max_results=100, max_bytes=0, force=True) == group


def test_sequence_and_instance_survive_reopen(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "spool.db"
    s = Spool(path, max_bytes=MiB, max_age=3600, clock=clock)
    instance, seq = s.instance, s.claim(s.append(batch(0))[0]).seq
    s.close()
    s = Spool(path, max_bytes=MiB, max_age=3600, clock=clock)
    assert s.instance == instance
    assert s.claim_oldest(100, MiB).seq == seq  # still frozen after a restart
    assert s.claim(s.append(batch(10))[0]).seq == seq + 1
    s.close()


def test_append_survives_kill_9(tmp_path: Path) -> None:
    """A write that returned is on disk even if the process dies at once, uncleanly."""
    path = tmp_path / "spool.db"
    script = textwrap.dedent(f"""
        import os, signal
        from commune_agent.spool import Spool
        from commune_common.wire import CheckResult
        s = Spool({str(path)!r}, max_bytes=1 << 20, max_age=3600)
        for i in range(5):
            s.append([CheckResult(check="c", probe="tcp", ts=float(i), ok=True, duration_s=0.0)])
        g = s.claim_oldest(100, 1 << 20)
        print(s.instance, g.seq, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == -9, proc.stderr
    instance, seq = proc.stdout.split()
    s = Spool(path, max_bytes=MiB, max_age=3600)
    assert s.instance == instance
    assert [r.ts for r in s.pending_results()] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert s.claim_oldest(100, MiB).seq == int(seq)
    s.close()


def test_age_bound_drops_oldest_and_counts(spool: Spool, clock: Clock) -> None:
    spool.append(batch(0))
    clock.now += 6 * 86400
    spool.append(batch(10))
    clock.now += 2 * 86400  # first row is 8 days old now, the second 2 days
    spool.append(batch(20))
    assert keys(spool.pending_results()) == keys(batch(10) + batch(20))
    assert spool.drops.by_reason == {"age": (1, 3)}
    assert spool.stats.oldest_created == clock.now - 2 * 86400


def test_size_bound_drops_quarantined_first_then_oldest(tmp_path: Path, clock: Clock) -> None:
    probe = Spool(tmp_path / "probe.db", max_bytes=MiB, max_age=3600, clock=clock)
    probe.append(batch(0))
    row_bytes = probe.stats.bytes
    probe.close()
    s = Spool(tmp_path / "spool.db", max_bytes=row_bytes * 3 + row_bytes // 4, max_age=3600, clock=clock, drops=DropCounts())
    rejected = s.claim(s.append(batch(0))[0])
    s.reject(rejected.seq, 422)
    s.append(batch(10))
    s.append(batch(20))
    assert s.stats.quarantined == 1 and s.drops.by_reason == {"rejected": (1, 3)}
    s.append(batch(30))  # four rows > three: the quarantined one goes, not counted twice
    assert s.stats.quarantined == 0 and s.drops.by_reason == {"rejected": (1, 3)}
    s.append(batch(40))  # now the oldest pending row goes
    assert keys(s.pending_results()) == keys(batch(20) + batch(30) + batch(40))
    assert s.drops.by_reason == {"rejected": (1, 3), "size": (1, 3)}
    assert s.stats.bytes <= s.max_bytes
    s.close()


def test_rejected_rows_are_never_claimed_again(spool: Spool) -> None:
    a = spool.append(batch(0))[0]
    group = spool.claim(a)
    assert spool.reject(group.seq, 401) == (1, 3)
    assert spool.claim(a) is None and spool.claim_oldest(100, MiB, force=True) is None
    assert spool.newest_id() is None
    rows = sqlite3.connect(spool.path).execute("SELECT rejected, seq FROM batches").fetchall()
    assert rows == [(401, group.seq)]  # kept aside for inspection


def test_corrupt_file_is_moved_aside_and_a_new_instance_drawn(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "spool.db"
    s = Spool(path, max_bytes=MiB, max_age=3600, clock=clock)
    old_instance = s.instance
    s.close()
    path.write_bytes(b"this is not an sqlite database at all" * 200)
    s = Spool(path, max_bytes=MiB, max_age=3600, clock=clock)
    assert s.instance != old_instance  # a restarted counter cannot collide with the old numbers
    assert s.claim(s.append(batch(0))[0]).seq == 1
    assert len(list(tmp_path.glob("spool.db.corrupt-*"))) == 1
    s.close()


def test_undecodable_row_is_quarantined_not_blocking(spool: Spool) -> None:
    bad, good = spool.append(batch(0))[0], spool.append(batch(10))[0]
    spool._db.execute("UPDATE batches SET body = x'00ff00' WHERE id = ?", (bad,))
    group = spool.claim_oldest(100, MiB)
    assert group.row_ids == (good,) and group.results == batch(10)
    assert spool.drops.by_reason == {"corrupt": (1, 3)} and spool.stats.quarantined == 1


def test_spool_from_a_newer_agent_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    Spool(path, max_bytes=MiB, max_age=3600).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(SpoolError, match="newer agent"):
        Spool(path, max_bytes=MiB, max_age=3600)
    assert path.exists()  # not moved aside: a downgrade must not throw data away


def test_unusable_state_dir_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError):
        Spool(blocker / "spool.db", max_bytes=MiB, max_age=3600)
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "spool.db").mkdir()  # a directory where the file should be
    with pytest.raises(SpoolError, match="cannot open"):
        Spool(tmp_path / "dir" / "spool.db", max_bytes=MiB, max_age=3600)
