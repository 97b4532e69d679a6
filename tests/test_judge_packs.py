"""Hour packs (judge/packs.py) over the real databases: a cold pass that reads them judges exactly as one
that reads every row, and a pack is current or absent.

Evidence goes in through ingest and the aggregator, as in production; the
judge packs closed hours between passes as its process does. What must hold
on SQLite and PostgreSQL alike: the matrix a cold pass builds from packs is
the rows' matrix cell for cell (round counts, value rings, sketches); spooled
evidence folded into a packed hour deletes that hour's pack of the check; a
pack lacking a value key today's criteria read is not used; a fold that
commits while an hour is being packed keeps its check's pack out.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from commune_collector.judge import Judge, parse_criteria
from commune_collector.judge import packs as packs_mod
from commune_collector.store.judge_evidence import PACK_SETTLE, StoreEvidence
from commune_collector.store.verdicts import SqlVerdictStore
from tests import test_judge_store as on_both
from testsupport.judge import H, between, short_criteria_yaml
from testsupport.judge import ScriptedSite as Scripted

LONG, Pusher, _matrix_by_check, view = on_both.LONG, on_both.Pusher, on_both._matrix_by_check, on_both.view
store = on_both.store  # the fixture: SQLite, and a fresh schema in the real PostgreSQL

P95 = """
  - id: primary-rtt-p95
    item: network
    title: {en: Primary RTT p95, vi: Độ trễ p95}
    select: {probe: icmp, role: primary}
    expr: p95(icmp_rtt_seconds{stat="avg"}, 6h) < 150ms
"""
VIDEO = "device/video-conference/icmp"
JITTER = """
  - id: video-jitter
    item: network
    title: {en: Video jitter, vi: Độ rung hình}
    select: {role: video_conference}
    expr: p95(icmp_jitter_seconds, 6h) < 30ms
"""


def judge_of(store: Any, now: list[float], extra: str = LONG + P95, packs: bool = True) -> Judge:
    judge = Judge(parse_criteria(short_criteria_yaml("10m", extra)), StoreEvidence(store),
                  SqlVerdictStore.for_store(store), clock=lambda: now[0], provinces={"ha-noi": "Hà Nội", "hue": "Huế"})
    judge.source.use_packs = packs  # type: ignore[attr-defined]
    return judge


def packed(store: Any) -> dict[tuple[float, str], int]:
    db = StoreEvidence(store).db
    try:
        return {(float(b), c): int(n) for b, c, n in
                db.fetch("SELECT bucket_start, check_id, entries FROM summary_packs")}
    finally:
        db.close()


def seven_hours(store: Any) -> tuple[Pusher, list[float], float]:
    start = time.time() // H * H - 8 * H
    now = [start + 7 * H + 20 * 60]
    pusher = Pusher(store)
    slow = lambda ts: 0.2 if start + 3 * H <= ts < start + 4 * H else 0.02  # noqa: E731 - one slow hour
    pusher.push(Scripted("hn-1", silent=between(start + 2 * H, start + 3 * H), primary_rtt=slow).script(),
                start, now[0], now[0])
    pusher.push(Scripted("hue-1").script(), start + H, now[0], now[0])
    return pusher, now, start


def pack_all(judge: Judge, now: float) -> int:
    judge.run_pass(now)
    return judge.pack_hours(budget=100)


def test_a_cold_pass_from_packs_equals_one_read_from_rows(store: Any) -> None:
    _, now, start = seven_hours(store)
    packer = judge_of(store, now)
    try:
        written = pack_all(packer, now[0])
        hours = packed(store)
        # closed hours that ended PACK_SETTLE ago, of the checks the judge reads (criteria and facts)
        closed = [start + h * H for h in range(7) if start + (h + 1) * H + PACK_SETTLE <= now[0]]
        read = {check for _, check in packer.source._kept}  # type: ignore[attr-defined]
        assert set(hours) == {(b, c) for b in closed for c in read} and written == len(hours), hours
        assert hours[(start, "link/fiber/icmp/provincial-dc")] == 1, "hue-1 reports from the second hour on"
        assert packer.pack_hours(budget=100) == 0, "packed hours are not packed again"
    finally:
        packer.close()
    cold, rows = judge_of(store, now), judge_of(store, now, packs=False)
    try:
        snap = cold.run_pass(now[0])
        rows.run_pass(now[0])
        assert cold.source.packs_read == len(hours) and rows.source.packs_read == 0  # type: ignore[attr-defined]
        assert _matrix_by_check(cold) == _matrix_by_check(rows)
        assert cold.last_stats.buckets_read == rows.last_stats.buckets_read
        for site in ("hn-1", "hue-1"):
            assert view(snap, site) == view(rows.snapshot, site), site
    finally:
        cold.close()
        rows.close()


def test_spooled_evidence_folded_into_a_packed_hour_deletes_that_pack(store: Any) -> None:
    pusher, now, start = seven_hours(store)
    packer = judge_of(store, now)
    try:
        pack_all(packer, now[0])
        before = packed(store)
        gap = (start + 2 * H, start + 3 * H)
        pusher.push(Scripted("hn-1").script(), *gap, received_at=now[0] + 30)  # hn-1's spool arrives
        after = packed(store)
        gone = set(before) - set(after)
        assert gone == {(gap[0], c) for b, c in before if b == gap[0]} and len(gone) > 2, gone
        assert all(after[k] == before[k] for k in after), "other packs untouched"
        cold, rows = judge_of(store, now), judge_of(store, now, packs=False)
        try:
            cold.run_pass(now[0])
            rows.run_pass(now[0])
            assert cold.source.packs_read == len(after)  # type: ignore[attr-defined]
            assert _matrix_by_check(cold) == _matrix_by_check(rows), "the unpacked hour was read from its rows"
        finally:
            cold.close()
            rows.close()
        now[0] += 60
        packer.run_pass(now[0])
        assert packer.pack_hours(budget=100) == len(gone) and packed(store)[(gap[0], "power/ups")] == 2
    finally:
        packer.close()


def test_a_pack_lacking_what_todays_criteria_read_is_not_used(store: Any) -> None:
    """Packed for criteria without the jitter p95, read by criteria with it: the video check's hours come
    from rows (the packs hold neither that check nor its sketch), until they are packed again."""
    _, now, _ = seven_hours(store)
    packer = judge_of(store, now)
    try:
        pack_all(packer, now[0])
    finally:
        packer.close()
    cold, rows = judge_of(store, now, LONG + P95 + JITTER), judge_of(store, now, LONG + P95 + JITTER, packs=False)
    try:
        cold.run_pass(now[0])
        rows.run_pass(now[0])
        matrix = _matrix_by_check(cold)
        assert matrix == _matrix_by_check(rows)
        assert "icmp_jitter_seconds/hist" in matrix[("hn-1", VIDEO)][2], "the sketch was read from rows"
        hours = packed(store)
        assert (min(hours)[0], VIDEO) in hours, "the video check was packed, without its jitter"
        assert cold.source.packs_read == len(hours) - len({b for b, _ in hours})  # type: ignore[attr-defined]
        written = cold.pack_hours(budget=100)
        assert written == len({b for b, _ in hours}), "the video check's hours packed again, once each"
    finally:
        cold.close()
        rows.close()
    again, rows = judge_of(store, now, LONG + JITTER), judge_of(store, now, LONG + JITTER, packs=False)
    try:
        again.run_pass(now[0])
        rows.run_pass(now[0])
        assert again.source.packs_read == len(packed(store))  # type: ignore[attr-defined]
        assert _matrix_by_check(again) == _matrix_by_check(rows)
    finally:
        again.close()
        rows.close()


def test_a_fold_committing_while_an_hour_is_packed_keeps_that_checks_pack_out(store: Any) -> None:
    """SQLite: the fold commits between the hour's read and the packs' insert, and is seen in the backfill
    log. PostgreSQL: the fold waits for the packer's lock, then its trigger deletes the fresh pack."""
    pusher, now, start = seven_hours(store)
    packer = judge_of(store, now)
    gap = (start + 2 * H, start + 3 * H)
    source = packer.source
    read_hour = source._read_hour  # type: ignore[attr-defined]
    spool = threading.Thread(target=pusher.push, args=(Scripted("hn-1").script(), *gap, now[0] + 30))

    def read_then_fold(conn: Any, bucket: float, checks: list[str]) -> Any:
        rows = read_hour(conn, bucket, checks)
        if bucket == gap[0]:
            spool.start()
            if store.dialect_impl.name == "sqlite":
                spool.join()  # committed before the packs are inserted
            else:
                _wait_for_a_blocked_lock(store)
        return rows

    source._read_hour = read_then_fold  # type: ignore[attr-defined]
    try:
        pack_all(packer, now[0])
        spool.join()
        hours = packed(store)
        assert (gap[0], "power/ups") not in hours and (gap[0] + H, "power/ups") in hours, hours
        source._read_hour = read_hour  # type: ignore[attr-defined]
        now[0] += 60
        packer.run_pass(now[0])
        assert packer.pack_hours(budget=100) > 0 and (gap[0], "power/ups") in packed(store)
        cold, rows = judge_of(store, now), judge_of(store, now, packs=False)
        try:
            cold.run_pass(now[0])
            rows.run_pass(now[0])
            assert _matrix_by_check(cold) == _matrix_by_check(rows)
        finally:
            cold.close()
            rows.close()
    finally:
        packer.close()


def _wait_for_a_blocked_lock(store: Any) -> None:
    """Until some session waits for an advisory lock (the fold, behind the packer's), within 20 s."""
    import psycopg
    deadline = time.monotonic() + 20
    with psycopg.connect(store.dialect_impl.dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            if conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                            ).fetchone()[0]:
                return
            time.sleep(0.02)
    raise AssertionError("the fold never waited for the packer's lock")


def test_a_pack_round_trips_its_arrays_and_refuses_legacy_histograms() -> None:
    rtt = [120, 3.0, 0.015, 0.035, 0.025, 1796511570.0, [-207, 15, 15, 15, 3, 15]]
    rows = [("a", 118, 2, 10.0, 3590.0, True, b'{"rtt":%s,"loss":[1,0,0,0,0,5,null]}' % str(rtt).encode()),
            ("b", 0, 0, 20.0, 20.0, False, b"{}"),
            ("c", 5, 0, 30.0, 40.0, False, b'{"rtt":[1,0.2,0.2,0.2,0.2,40.0,[-100,1]]}')]
    pack = packs_mod.decode(3600.0, "x", packs_mod.encode(rows, {"rtt": True, "loss": False}) or b"")
    assert pack is not None and pack.site_list() == ["a", "b", "c"]
    assert pack.ok.tolist() == [118, 0, 5] and pack.failed.tolist() == [True, False, False]
    assert pack.values["rtt"].position.tolist() == [0, -1, 1] and pack.values["loss"].position.tolist() == [0, -1, -1]
    flat, sizes = pack.values["rtt"].sketches(pack.values["rtt"].position[[2, 0]])
    assert flat.tolist() == [-100, 1, -207, 15, 15, 15, 3, 15] and sizes.tolist() == [1, 3]
    assert pack.holds({"rtt": True, "loss": False}) and not pack.holds({"loss": True})
    legacy = [("a", 1, 0, 1.0, 1.0, False, b'{"rtt":[1,0.2,0.2,0.2,0.2,1.0,{"12":1}]}')]
    assert packs_mod.encode(legacy, {"rtt": True}) is None
    assert packs_mod.decode(3600.0, "x", b"not a pack") is None


def test_packs_older_than_the_window_are_dropped(store: Any, tmp_path: Path) -> None:
    _, now, start = seven_hours(store)
    packer = judge_of(store, now, LONG)  # a 6 h window: the first hour falls out of it after an hour
    try:
        pack_all(packer, now[0])
        assert min(b for b, _ in packed(store)) == start
        now[0] += 2 * H
        packer.run_pass(now[0])
        packer.pack_hours(budget=100)
        assert min(b for b, _ in packed(store)) >= packer.matrix.horizon(now[0])
    finally:
        packer.close()


@pytest.mark.parametrize("extra", [LONG + P95])
def test_a_judge_without_packs_reads_rows(store: Any, extra: str) -> None:
    """``judge.hour_packs: false``: nothing packed, nothing read from packs."""
    _, now, _ = seven_hours(store)
    judge = judge_of(store, now, extra, packs=False)
    try:
        judge.run_pass(now[0])
        assert judge.pack_hours(budget=100) == 0 and not packed(store)
    finally:
        judge.close()
