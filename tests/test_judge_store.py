"""The judge over the collector's real database, SQLite and PostgreSQL alike.

Reports go in through the store's ingest and the aggregator folds them, as
in production; the judge reads them through ``StoreEvidence`` and persists
its verdicts through ``SqlVerdictStore``. What must hold on both databases:
late (spooled) evidence written into old buckets is found again by the next
pass, a restarted judge resumes from the database, and the history is there.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from commune_collector.aggregator import fold_journal
from commune_collector.intake import ClockReading, to_item
from commune_collector.judge import Judge
from commune_collector.judge.persist import ReadOnlyVerdicts, StateRow, Transition
from commune_collector.sites import Site
from commune_collector.store.judge_evidence import StoreEvidence
from commune_collector.store.judge_helper import ColdHelper
from commune_collector.store.verdicts import SqlVerdictStore
from commune_common.wire import CheckResult, Report
from testsupport.judge import H, between, criterion, short_criteria
from testsupport.judge import ScriptedSite as Scripted
from testsupport.synth import SiteScript

BACKENDS = ["sqlite", "postgres"]
SITES = [Site("hn-1", "Xã Một", "ha-noi", "Xã Một"), Site("hue-1", "Phường Hai", "hue", "Phường Hai")]


def _postgres_dsn(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh schema in the session's real PostgreSQL, dropped afterwards."""
    import psycopg
    from psycopg.conninfo import make_conninfo
    peer = request.getfixturevalue("postgres")
    schema = f"j_{secrets.token_hex(6)}"
    with psycopg.connect(peer.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield make_conninfo(peer.dsn, options=f"-c search_path={schema}")
    finally:
        with psycopg.connect(peer.dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "sqlite":
        from commune_collector.store.sqlite import SQLiteStore
        s = SQLiteStore(tmp_path / "collector.db")
        s.migrate()
        s.upsert_sites(SITES)
        yield s
        s.close()
        return
    from commune_collector.store.postgres import PostgresStore
    dsn_gen = _postgres_dsn(request)
    s = PostgresStore(next(dsn_gen))
    s.migrate()
    s.upsert_sites(SITES)
    yield s
    s.close()
    next(dsn_gen, None)


class Pusher:
    """Ingests a scripted site's rounds as agent reports, then lets the aggregator fold them."""

    def __init__(self, store: Any):
        self.store = store
        self.seq = 0

    def push(self, script: SiteScript, start: float, end: float, received_at: float) -> None:
        results: list[CheckResult] = script.rounds(start, end)
        for i in range(0, len(results), 2000):
            self.seq += 1
            report = Report(site=script.site, instance="inst", seq=self.seq, sent_at=received_at,
                            agent_version="test", results=results[i:i + 2000])
            self.store.ingest(to_item(report, received_at, ClockReading(0.0, 0.0, False)))
        fold_journal(self.store)


def make_judge(store: Any, now: list[float], **kwargs: Any) -> Judge:
    verdicts = SqlVerdictStore.for_store(store)
    return Judge(short_criteria(**kwargs), StoreEvidence(store), verdicts, clock=lambda: now[0],
                 provinces={"ha-noi": "Hà Nội", "hue": "Huế"})


LONG = """
  - id: primary-6h
    item: network
    title: {en: Primary up over 6h, vi: Đường truyền chính 6 giờ}
    select: {probe: icmp, role: primary}
    expr: availability(6h) >= 99%
    min_coverage: 90%
"""


def test_late_evidence_in_old_buckets_is_judged_again(store: Any) -> None:
    """A 3 h gap is unknown, not down; the spooled rounds, folded into their own hours later, count."""
    start = time.time() // H * H - 8 * H
    gap = (start + 2 * H, start + 5 * H)
    now = [start + 6 * H]
    pusher = Pusher(store)
    pusher.push(Scripted("hn-1", silent=between(*gap)).script(), start, now[0], received_at=now[0])
    judge = make_judge(store, now, stable="10m", extra=LONG)
    try:
        before = criterion(judge.run_pass(now[0]).verdict("hn-1"), "primary-6h")
        assert before["met"] is None and before["coverage"] < 0.6, before
        assert "evidence covers" in before["reason"]
        # the agent's spool arrives: the gap's rounds with their original timestamps
        pusher.push(Scripted("hn-1").script(), *gap, received_at=now[0] + 30)
        now[0] += 60
        after = criterion(judge.run_pass(now[0]).verdict("hn-1"), "primary-6h")
        assert after["met"] is True and after["coverage"] > 0.95, after
        assert judge.last_stats.buckets_read >= 3, "the backfilled hours were read again"
    finally:
        judge.close()


def test_a_restarted_judge_resumes_from_the_database(store: Any) -> None:
    start = time.time() // H * H - 3 * H
    now = [start + 2 * H]
    pusher = Pusher(store)
    pusher.push(Scripted("hn-1").script(), start, now[0], received_at=now[0])
    judge = make_judge(store, now, stable="1h")
    snap = judge.run_pass(now[0])
    candidate = snap.verdict("hn-1")["candidate_since"]
    assert candidate == now[0] and snap.verdict("hn-1")["state"] == "unknown"
    judge.close()
    now[0] += 1.2 * H
    pusher.push(Scripted("hn-1").script(), start + 2 * H, now[0], received_at=now[0])
    again = make_judge(store, now, stable="1h")
    try:
        verdict = again.run_pass(now[0]).verdict("hn-1")
        assert verdict["candidate_since"] == candidate
        assert verdict["state"] == "completed"
        history = again.history(now=now[0])
        assert history["series"] and history["series"][-1]["completed"] == 1
        assert history["series"][-1]["total"] == 2
    finally:
        again.close()


WHY = {"criterion": "primary-loss", "code": "measured",
       "params": {"what": {"en": "loss", "vi": "Tỷ lệ mất gói"}, "value": 0.03, "unit": "ratio", "op": "<",
                  "threshold": 0.01, "window_s": 3600.0}}


def test_verdict_store_round_trip(store: Any) -> None:
    verdicts = SqlVerdictStore.for_store(store)
    try:
        verdicts.save_states([StateRow("hn-1", 2, 10.0, 5.0, 2, {"network": (2, 10.0, 5.0, 2)}),
                              StateRow("hue-1", 0, 11.0, None, 0, {})], now=12.0)
        verdicts.save_states([StateRow("hue-1", 1, 13.0, None, 1, {"power": (1, 13.0, None, 1)})], now=14.0)
        states = verdicts.load_states()
        assert states["hn-1"] == StateRow("hn-1", 2, 10.0, 5.0, 2, {"network": (2, 10.0, 5.0, 2)})
        assert states["hue-1"].items == {"power": (1, 13.0, None, 1)}
        verdicts.add_transitions([Transition("hn-1", "ha-noi", 100.0, "completed", "not_completed", True,
                                             ["primary-loss"], "loss 3% over 1h, threshold < 1%", [WHY]),
                                  Transition("hn-1", "ha-noi", 200.0, "not_completed", "completed", False)])
        assert [t.to_state for t in verdicts.transitions(0.0)] == ["not_completed", "completed"]
        [regression] = verdicts.transitions(0.0, regressions_only=True)
        assert regression.cause == ["primary-loss"] and regression.detail.startswith("loss 3%")
        assert regression.reasons == [WHY], "the reason's code and parameters come back as written"
        assert [t.reasons for t in verdicts.transitions(150.0)] == [[]]
        assert verdicts.regression_counts() == {"hn-1": 1}
        counts = {"total": 2, "completed": 1, "not_completed": 1, "unknown": 0,
                  "items": {"network": {"completed": 1, "done": False}}}
        verdicts.save_history("2025-06-30", [("ha-noi", counts), ("", counts)], now=1.0)
        verdicts.save_history("2025-07-01", [("", {**counts, "completed": 2})], now=2.0)
        assert [r[0] for r in verdicts.history("2025-06-01")] == ["2025-06-30", "2025-07-01"]
        assert verdicts.history("2025-07-01")[0][2]["completed"] == 2
        assert verdicts.history("2025-06-01", "ha-noi")[0][2]["items"]["network"]["completed"] == 1
        assert verdicts.prune(150.0, "2025-07-01") == 3
        assert [t.at for t in verdicts.transitions(0.0)] == [200.0]
    finally:
        verdicts.close()


def test_only_the_checks_criteria_read_are_read(store: Any) -> None:
    """Per-target TCP checks no criterion names are never read; a relabelled check is picked up."""
    start = time.time() // H * H - H
    now = [start + 0.5 * H]
    pusher = Pusher(store)
    script = Scripted("hn-1").script()
    script.checks[0].labels = dict(script.checks[0].labels, role="other")  # not primary: nothing reads it
    pusher.push(script, start, now[0], received_at=now[0])
    judge = make_judge(store, now)
    try:
        snap = judge.run_pass(now[0])
        assert "link/fiber/icmp/provincial-dc" not in judge.matrix.check
        assert criterion(snap.verdict("hn-1"), "primary-availability")["reason"].startswith("no check matches")
        now[0] += 600
        pusher.push(Scripted("hn-1").script(), now[0] - 600, now[0], received_at=now[0])  # role: primary again
        snap = judge.run_pass(now[0])
        assert "link/fiber/icmp/provincial-dc" in judge.matrix.check
        assert criterion(snap.verdict("hn-1"), "primary-availability")["checks"] == ["link/fiber/icmp/provincial-dc"]
    finally:
        judge.close()


def test_backfill_log_is_consumed(store: Any) -> None:
    start = time.time() // H * H - 5 * H
    now = [start + 4.5 * H]
    pusher = Pusher(store)
    pusher.push(Scripted("hn-1").script(), start, start + 2 * H, received_at=now[0])
    judge = make_judge(store, now)
    try:
        judge.run_pass(now[0])
        pusher.push(Scripted("hn-1").script(), start + 2 * H, start + 3 * H, received_at=now[0] + 10)
        count: Callable[[], int] = lambda: int(judge.source.db.fetch("SELECT COUNT(*) FROM judge_backfill")[0][0])  # noqa: E731
        assert count() > 0, "the trigger logged the writes to an old bucket"
        now[0] += 30
        judge.run_pass(now[0])
        assert count() == 0
    finally:
        judge.close()


# -- checkpoints: a restart without re-reading a day of evidence ----------------------------------


def checkpointed(store: Any, now: list[float], path: Path, **kwargs: Any) -> Judge:
    return Judge(short_criteria(stable="10m", extra=LONG, **kwargs), StoreEvidence(store),
                 SqlVerdictStore.for_store(store), clock=lambda: now[0], provinces={"ha-noi": "Hà Nội", "hue": "Huế"},
                 checkpoint=path, checkpoint_interval=3600.0)


def view(snapshot: Any, site: str = "hn-1") -> list[tuple[str, Any, Any]]:
    verdict = snapshot.verdict(site)
    return [(c["id"], c["met"], None if c["value"] is None else round(c["value"], 9)) for c in verdict["criteria"]]


def test_a_restart_resumes_from_the_checkpoint(store: Any, tmp_path: Path) -> None:
    """Restored matrix + what was written meanwhile (new hours and late old buckets) = a full read."""
    start = time.time() // H * H - 7 * H
    now = [start + 5.5 * H]
    gap = (start + 2 * H, start + 3 * H)
    pusher = Pusher(store)
    pusher.push(Scripted("hn-1", silent=between(*gap)).script(), start, now[0], received_at=now[0])
    first = checkpointed(store, now, tmp_path / "cp.npz")
    full_read = first.run_pass(now[0])
    assert first.last_stats.buckets_read >= 5 * 5  # 5 checks x the 5 hours with evidence
    first.close()  # saves the checkpoint
    assert (tmp_path / "cp.npz").exists()
    # while the collector is down: the next hour arrives, and the gap's spooled rounds
    pusher.push(Scripted("hn-1").script(), now[0], start + 6.5 * H, received_at=start + 6.5 * H)
    pusher.push(Scripted("hn-1").script(), *gap, received_at=start + 6.5 * H)
    now[0] = start + 6.5 * H
    second = checkpointed(store, now, tmp_path / "cp.npz")
    resumed = second.run_pass(now[0])
    # only what changed: the hour the checkpoint was taken in, the new hour, the gap's hour; 5 checks each
    assert second.last_stats.buckets_read == 3 * 5, "re-read the whole window"
    fresh_judge = make_judge_long(store, now)
    fresh = fresh_judge.run_pass(now[0])
    assert fresh_judge.last_stats.buckets_read == 7 * 5
    fresh_judge.close()
    assert view(resumed) == view(fresh)
    assert view(resumed) != view(full_read), "the restart missed what arrived meanwhile"
    second.close()


def test_a_resumed_restart_reads_whole_windows_of_what_appeared_while_it_was_down(store: Any, tmp_path: Path
                                                                                    ) -> None:
    """A restart reads what its checkpoint holds, not every check of every site again; a site that began
    reporting while the collector was down, and a check that came into a criterion's selection meanwhile,
    are read over their whole window anyway: verdicts equal a full read's."""
    start = time.time() // H * H - 7 * H
    now = [start + 4.5 * H]
    pusher = Pusher(store)
    other_role = Scripted("hn-1").script()
    other_role.checks[0].labels = dict(other_role.checks[0].labels, role="other")  # the primary link: unread
    pusher.push(other_role, start, now[0], received_at=now[0])
    first = checkpointed(store, now, tmp_path / "cp.npz")
    first.run_pass(now[0])
    assert "link/fiber/icmp/provincial-dc" not in first.matrix.check
    first.close()
    # down for two hours: hn-1's primary link has its role back, hue-1 reports (with its spooled hours)
    pusher.push(Scripted("hn-1").script(), now[0], start + 6.5 * H, received_at=start + 6.5 * H)
    pusher.push(Scripted("hue-1", silent=between(start + 2 * H, start + 3 * H)).script(), start, start + 6.5 * H,
                received_at=start + 6.5 * H)
    now[0] = start + 6.5 * H
    second = checkpointed(store, now, tmp_path / "cp.npz")
    resumed = second.run_pass(now[0])
    fresh_judge = make_judge_long(store, now)
    fresh = fresh_judge.run_pass(now[0])
    fresh_judge.close()
    assert second.last_stats.buckets_read < fresh_judge.last_stats.buckets_read, "re-read everything"
    assert "link/fiber/icmp/provincial-dc" in second.matrix.check
    for site in ("hn-1", "hue-1"):
        assert view(resumed, site) == view(fresh, site), site
    assert criterion(resumed.verdict("hn-1"), "primary-6h")["checks"] == ["link/fiber/icmp/provincial-dc"]
    second.close()


def _explode() -> None:
    raise RuntimeError("this helper was made to fail")


class HelperFails:
    """Criteria the helper process cannot take: unpickling them there raises."""

    def __reduce__(self) -> Any:
        return (_explode, ())


def _matrix_by_check(judge: Judge) -> dict[tuple[str, str], Any]:
    m = judge.matrix
    out: dict[tuple[str, str], Any] = {}
    for row, key in enumerate(zip(m.site, m.check, strict=True)):
        cells: dict[str, Any] = {name: arr[row].tobytes() for name, arr in m.cols.arrays.items()}  # NaN equals NaN
        for name, store_ in m.keys.items():
            krow = int(store_.index[row]) if row < len(store_.index) else -1
            if krow >= 0:
                cells[name] = {part: arr[krow].tobytes() for part, arr in store_.ring.arrays.items()}
                if store_.with_hist and krow < len(store_.hist_index) and store_.hist_index[krow] >= 0:
                    cells[name + "/hist"] = store_.hist["h"][store_.hist_index[krow]].tobytes()
        out[key] = (m.probe[row], m.raw_labels[row], cells)
    return out


@pytest.mark.parametrize("helper", ["works", "fails"])
def test_a_cold_pass_shared_with_a_helper_process_equals_one_read_alone(store: Any, tmp_path: Path, helper: str,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    """The helper reads the last sites in its own process and hands its matrix over; the result is the
    judge's own read of every site, cell for cell. A helper that fails costs time, not evidence."""
    start = time.time() // H * H - 7 * H
    now = [start + 5.5 * H]
    pusher = Pusher(store)
    pusher.push(Scripted("hn-1", silent=between(start + 2 * H, start + 3 * H)).script(), start, now[0], now[0])
    pusher.push(Scripted("hue-1").script(), start + H, now[0], now[0])
    alone = make_judge_long(store, now)
    alone.run_pass(now[0])
    shared = make_judge_long(store, now)
    config = shared.config if helper == "works" else HelperFails()
    shared.source.helper = ColdHelper(config, tmp_path / "data", min_sites=0)  # type: ignore[attr-defined]
    try:
        with caplog.at_level(logging.INFO, logger="commune_collector.judge"):
            snap = shared.run_pass(now[0])
        said = caplog.text
        assert "a helper process shares the reading of 2 sites" in said
        assert ("the helper process failed" in said) == (helper == "fails"), said
        assert shared.last_stats.buckets_read == alone.last_stats.buckets_read
        assert _matrix_by_check(shared) == _matrix_by_check(alone)
        for site in ("hn-1", "hue-1"):
            assert view(snap, site) == view(alone.snapshot, site), site
        assert not list((tmp_path / "data").glob("judge-part-*")), "the part file was left behind"
        shared.matrix.absorb(alone.matrix)  # checks already held (a first pass read again): rows replaced
        assert _matrix_by_check(shared) == _matrix_by_check(alone)
        pusher.push(Scripted("hue-1").script(), now[0], now[0] + 600, now[0] + 600)  # then passes go on as usual
        now[0] += 600
        assert view(shared.run_pass(now[0]), "hue-1") == view(alone.run_pass(now[0]), "hue-1")
    finally:
        alone.close()
        shared.close()


def make_judge_long(store: Any, now: list[float]) -> Judge:
    return Judge(short_criteria(stable="10m", extra=LONG), StoreEvidence(store), SqlVerdictStore.for_store(store),
                 clock=lambda: now[0], provinces={"ha-noi": "Hà Nội", "hue": "Huế"})


def test_late_evidence_read_after_the_last_checkpoint_survives_a_crash(store: Any, tmp_path: Path) -> None:
    start = time.time() // H * H - 7 * H
    now = [start + 5.5 * H]
    gap = (start + 2 * H, start + 3 * H)
    pusher = Pusher(store)
    pusher.push(Scripted("hn-1", silent=between(*gap)).script(), start, now[0], received_at=now[0])
    judge = checkpointed(store, now, tmp_path / "cp.npz")
    judge.run_pass(now[0])  # first pass: saved
    pusher.push(Scripted("hn-1").script(), *gap, received_at=now[0] + 30)
    now[0] += 60
    after_backfill = view(judge.run_pass(now[0]))  # reads the backfill; no save yet (interval 1h)
    # the process dies here: no close(), the checkpoint is the one from the first pass
    restarted = checkpointed(store, now, tmp_path / "cp.npz")
    assert view(restarted.run_pass(now[0])) == after_backfill


def test_a_checkpoint_for_other_criteria_is_not_used(store: Any, tmp_path: Path) -> None:
    start = time.time() // H * H - 4 * H
    now = [start + 3.5 * H]
    Pusher(store).push(Scripted("hn-1").script(), start, now[0], received_at=now[0])
    judge = checkpointed(store, now, tmp_path / "cp.npz")
    judge.run_pass(now[0])
    judge.close()
    fresh = Judge(short_criteria(stable="20m"), StoreEvidence(store), SqlVerdictStore.for_store(store),
                  clock=lambda: now[0])
    fresh.run_pass(now[0])
    other = Judge(short_criteria(stable="20m"), StoreEvidence(store), SqlVerdictStore.for_store(store),
                  clock=lambda: now[0], checkpoint=tmp_path / "cp.npz")
    other.run_pass(now[0])
    assert other.last_stats.buckets_read == fresh.last_stats.buckets_read == 3 * 5, "a stale checkpoint was used"
    for j in (fresh, other):
        j.close()


def test_a_read_only_pass_leaves_the_running_judges_cursor_and_log(store: Any) -> None:
    """`commune-collector report` judges beside a running collector without stealing its late evidence."""
    start = time.time() // H * H - 5 * H
    now = [start + 4.5 * H]
    pusher = Pusher(store)
    pusher.push(Scripted("hn-1").script(), start, start + 2 * H, received_at=now[0])
    judge = make_judge(store, now)
    judge.run_pass(now[0])
    pusher.push(Scripted("hn-1").script(), start + 2 * H, start + 3 * H, received_at=now[0] + 10)
    db = judge.source.db
    before = (db.fetch("SELECT read_from FROM judge_cursor"), db.fetch("SELECT COUNT(*) FROM judge_backfill"))
    assert before[1][0][0] > 0
    reader = Judge(short_criteria(), StoreEvidence(store, read_only=True),
                   ReadOnlyVerdicts(SqlVerdictStore.for_store(store)), clock=lambda: now[0] + 3600)
    reader.run_pass(now[0] + 3600)
    reader.close()
    assert (db.fetch("SELECT read_from FROM judge_cursor"), db.fetch("SELECT COUNT(*) FROM judge_backfill")) == before
    judge.close()


def test_item_states_come_back_as_saved_also_with_a_number_json_cannot_write_plainly(store: Any) -> None:
    """States are written with msgspec; a non-finite number (which msgspec would write as null) falls back to
    ``json`` and is read back as itself."""
    verdicts = SqlVerdictStore.for_store(store)
    rows = [StateRow("hn-1", 2, 1000.5, None, 2, {"network": (2, 1000.5, None, 2),
                                                            "reporting": (0, 2000.0, 1500.25, 2)}),
            StateRow("hue-1", 0, 10.0, 20.0, 1, {"network": (1, float("inf"), None, 1)})]
    verdicts.save_states(rows, 3000.0)
    loaded = verdicts.load_states()
    assert {site: (r.state, r.since, r.candidate, r.last_definite, r.items) for site, r in loaded.items()} == {
        r.site: (r.state, r.since, r.candidate, r.last_definite, r.items) for r in rows}
    verdicts.close()
