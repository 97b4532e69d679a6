"""One store test suite, run against SQLite and against a real PostgreSQL.

The collector's promises live here: a report is stored once however often it
is resent and in whatever order; what the writer acknowledged survives a
reopen; the journal is folded into hourly summaries exactly once, even with two
folders racing; late evidence lands in its own older bucket; retention prunes
what is old and nothing else.
"""

from __future__ import annotations

import random
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from commune_collector.aggregator import fold_journal, prune_evidence
from commune_collector.evidence import BUCKET_SECONDS, bucket_of, fold_results
from commune_collector.intake import read_clock, to_item
from commune_collector.settings import ClockSettings
from commune_collector.sites import Site
from commune_collector.store.base import IngestItem, Store, StoreBusy, StoreError, TokenRecord
from commune_collector.store.migrate import discover
from commune_common.wire import CheckResult, Report
from testsupport.collector import make_report, sample_results
from testsupport.peers._base import wait_until

try:
    from testsupport.peers.fixtures import postgres  # noqa: F401 - the shared session fixture
except ImportError:  # the shared fixtures module is not there: the same peer, started here
    from testsupport.peers.postgres import postgres_fixture
    postgres = postgres_fixture(scope="session", name="postgres")

HOUR = float(BUCKET_SECONDS)
BACKENDS = ["sqlite", "postgres"]
SITES = [Site("ha-noi-ba-dinh", "Trung tâm Phục vụ hành chính công Phường Ba Đình", "ha-noi", "Phường Ba Đình",
              ("fiber", "lte"), ("router", "switch"), ("ups",)),
         Site("hue-thuan-hoa", "Trung tâm Phục vụ hành chính công Phường Thuận Hóa", "hue", "Phường Thuận Hóa"),
         Site("dak-lak-ea-kao", "Trung tâm Phục vụ hành chính công Xã Ea Kao", "dak-lak", "Xã Ea Kao", ("fiber",))]
SITE = SITES[0].id


def _postgres_dsn(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh schema in the session's real PostgreSQL, dropped afterwards."""
    import psycopg
    from psycopg.conninfo import make_conninfo
    peer = request.getfixturevalue("postgres")
    base = peer.dsn
    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield make_conninfo(base, options=f"-c search_path={schema}")
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=BACKENDS)
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Store]]:
    """Opens (migrated) stores on one fresh database of the backend; closes them all at the end."""
    opened: list[Store] = []
    if request.param == "sqlite":
        from commune_collector.store.sqlite import SQLiteStore

        def make(**kwargs: object) -> Store:
            store = SQLiteStore(tmp_path / "collector.db", **kwargs)  # type: ignore[arg-type]
            store.migrate()
            opened.append(store)
            return store
        yield make
    else:
        from commune_collector.store.postgres import PostgresStore
        dsn_gen = _postgres_dsn(request)
        dsn = next(dsn_gen)

        def make(**kwargs: object) -> Store:
            store = PostgresStore(dsn, **kwargs)  # type: ignore[arg-type]
            store.migrate()
            opened.append(store)
            return store
        yield make
        for store in opened:
            store.close()
        next(dsn_gen, None)
    for store in opened:
        store.close()


@pytest.fixture
def store(store_factory: Callable[..., Store]) -> Store:
    s = store_factory()
    s.upsert_sites(SITES)
    return s


def item_of(report: Report, received_at: float | None = None, clock: ClockSettings | None = None) -> IngestItem:
    received = report.sent_at if received_at is None else received_at
    return to_item(report, received, read_clock(report.sent_at, received, clock or ClockSettings()))


def rounds(store: Store, site: str = SITE) -> int:
    return sum(s.rounds for s in store.summaries(0, 2e10, [site]))


# -- schema -------------------------------------------------------------------------------


def test_migrations_apply_once_and_are_recorded(store_factory: Callable[..., Store]) -> None:
    store = store_factory()
    assert store.migrate() == []  # the factory migrated already
    assert store.check_ready() is None
    assert 1 in store.applied_migrations()  # type: ignore[attr-defined]


def test_migration_runner_orders_any_numbers_and_refuses_clashes(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "fake_migrations"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name in ("0001_init.sqlite.sql", "0001_init.postgres.sql", "0100_verdicts.sql", "0002_pg_only.postgres.sql"):
        (pkg / name).write_text("SELECT 1;")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert [m.version for m in discover("sqlite", "fake_migrations")] == [1, 100]
    assert [m.version for m in discover("postgres", "fake_migrations")] == [1, 2, 100]
    (pkg / "0100_other.sqlite.sql").write_text("SELECT 2;")
    sys.modules.pop("fake_migrations", None)
    with pytest.raises(ValueError, match="two migrations numbered 100"):
        discover("sqlite", "fake_migrations")


# -- inventory and tokens ---------------------------------------------------------------------


def test_site_import_is_idempotent_and_keeps_diacritics(store_factory: Callable[..., Store]) -> None:
    store = store_factory()
    first = store.upsert_sites(SITES)
    assert (first.inserted, first.updated, first.unchanged) == (3, 0, 0)
    renamed = Site(*[getattr(SITES[1], f) for f in ("id", "name", "province")], "Phường Thuận Hóa mới")
    again = store.upsert_sites([SITES[0], renamed, SITES[2]])
    assert (again.inserted, again.updated, again.unchanged) == (0, 1, 2)
    assert store.get_site(SITES[0].id) == SITES[0]
    assert store.get_site(renamed.id).commune == "Phường Thuận Hóa mới"
    assert store.get_site("nope") is None
    assert store.count_sites() == {"ha-noi": 1, "hue": 1, "dak-lak": 1}
    behind = Site(SITES[2].id, SITES[2].name, SITES[2].province, SITES[2].commune, upstream="agg-dak-lak-1")
    assert store.upsert_sites([behind]).updated == 1
    assert store.get_site(behind.id).upstream == "agg-dak-lak-1"


def test_list_sites_pages_and_filters_by_province(store_factory: Callable[..., Store]) -> None:
    store = store_factory()
    many = [Site(f"ha-noi-x{i:03d}", f"Xã {i}", "ha-noi", f"Xã Số {i}") for i in range(25)]
    store.upsert_sites(many + SITES)
    page = store.list_sites("ha-noi", limit=10, offset=20)
    assert page.total == 26
    assert [s.id for s in page.items] == sorted(s.id for s in [*many, SITES[0]])[20:26]
    assert store.list_sites(limit=2).total == 28
    assert [s.id for s in store.list_sites("hue").items] == ["hue-thuan-hoa"]


def test_tokens_are_stored_hashed_revoked_by_id_or_site(store: Store) -> None:
    store.add_token(TokenRecord("aaaaaaaaaaaa", SITE, "h1", 1.0))
    store.add_token(TokenRecord("bbbbbbbbbbbb", SITE, "h2", 2.0))
    store.add_token(TokenRecord("cccccccccccc", "hue-thuan-hoa", "h3", 3.0))
    with pytest.raises(StoreError, match="unknown site"):
        store.add_token(TokenRecord("dddddddddddd", "no-such-site", "h4", 4.0))
    assert store.get_token("dddddddddddd") is None
    assert store.revoke_tokens("aaaaaaaaaaaa", 10.0) == 1
    assert store.get_token("aaaaaaaaaaaa").revoked_at == 10.0
    assert store.revoke_tokens(SITE, 11.0) == 1  # only the live one is left for the site
    assert store.get_token("cccccccccccc").revoked_at is None
    assert [t.id for t in store.list_tokens(SITE)] == ["bbbbbbbbbbbb", "aaaaaaaaaaaa"]


def test_maintenance_windows_keep_their_history(store: Store) -> None:
    from commune_collector.maintenance.windows import MaintenanceWindow
    once = MaintenanceWindow("mw-00000001", "sites", (SITE,), (SITE,), ("ha-noi",), 1000.0, 2000.0,
                             "EVN cắt điện", "nguyen.van.a", 900.0)
    weekly = MaintenanceWindow("mw-00000002", "province", ("hue",), ("hue-thuan-hoa",), ("hue",), 500.0, 600.0,
                               "bảo dưỡng", "tran.thi.b", 400.0, every="week", until=500.0 + 4 * 604800)
    store.add_window(once)
    store.add_window(weekly)
    assert store.get_window("mw-00000001") == once, "every field round-trips, diacritics too"
    assert [w.id for w in store.list_windows()] == ["mw-00000002", "mw-00000001"]
    assert [w.id for w in store.list_windows(since=5000.0)] == ["mw-00000002"], "a recurring one may cover later"
    assert store.cancel_window("mw-00000001", 1500.0, "le.van.c", "xong sớm")
    assert not store.cancel_window("mw-00000001", 1600.0, "someone"), "cancelled once"
    assert not store.cancel_window("mw-ffffffff", 1600.0, "someone")
    cancelled = store.get_window("mw-00000001")
    assert (cancelled.cancelled_at, cancelled.cancelled_by, cancelled.cancel_note, cancelled.reason) == (
        1500.0, "le.van.c", "xong sớm", "EVN cắt điện")


# -- ingest and idempotency -----------------------------------------------------------------


def test_a_resent_report_is_acknowledged_and_not_stored_twice(store: Store) -> None:
    report = make_report(SITE, 1, n=4)
    assert store.ingest(item_of(report)).duplicate is False
    assert store.ingest(item_of(report)).duplicate is True
    assert store.stats().journal_reports == 1
    fold_journal(store)
    assert rounds(store) == 4


def test_any_order_of_seqs_with_gaps_and_resends_stores_each_once(store: Store) -> None:
    rng = random.Random(7)
    seqs = [s for s in range(1, 121) if s % 17]  # gaps that never fill (released or refused seqs)
    sends = seqs + rng.sample(seqs, 40)  # resends
    rng.shuffle(sends)
    stored = [s for s in sends if not store.ingest(item_of(make_report(SITE, s, n=1))).duplicate]
    assert sorted(stored) == seqs
    # another instance of the same site (a reinstalled agent) restarts at 1 and is new
    assert store.ingest(item_of(make_report(SITE, 1, n=1, instance="inst-2"))).duplicate is False
    fold_journal(store)
    assert rounds(store) == len(seqs) + 1


def test_accepted_reports_survive_reopening_the_store(store_factory: Callable[..., Store]) -> None:
    first = store_factory()
    first.upsert_sites(SITES)
    for seq in range(1, 6):
        first.ingest(item_of(make_report(SITE, seq, n=3)))
    first.close()
    second = store_factory()
    assert second.ingest(item_of(make_report(SITE, 3, n=3))).duplicate is True
    assert set(second.latest(SITE)) == {f"link/fiber/icmp/t{i}" for i in range(3)}
    assert fold_journal(second) == 5
    assert rounds(second) == 15


def test_concurrent_submits_are_all_durable_and_a_failing_job_spoils_nothing(store: Store) -> None:
    futures = [store.submit_ingest(item_of(make_report(SITE, seq, n=2))) for seq in range(1, 201)]
    with pytest.raises(StoreError):  # fails inside the same stream of group commits
        store.add_token(TokenRecord("eeeeeeeeeeee", "no-such-site", "h", 1.0))
    futures += [store.submit_ingest(item_of(make_report(SITE, seq, n=2))) for seq in range(201, 301)]
    assert all(f.result(timeout=60).duplicate is False for f in futures)
    assert store.stats().journal_reports == 300


def test_a_full_write_queue_answers_busy_at_once(store_factory: Callable[..., Store]) -> None:
    store = store_factory(max_pending=2)
    store.upsert_sites(SITES)
    release = threading.Event()
    blocker = store._writer.submit(lambda conn: release.wait(30))  # type: ignore[attr-defined]
    wait_until(blocker.running, timeout=10, what="the writer to start the blocking job")
    queued = [store._writer.submit(lambda conn: None) for _ in range(2)]  # type: ignore[attr-defined]
    try:
        with pytest.raises(StoreBusy):
            store.submit_ingest(item_of(make_report(SITE, 1)))
    finally:
        release.set()
    blocker.result(30)
    [f.result(30) for f in queued]
    assert store.ingest(item_of(make_report(SITE, 1))).duplicate is False


# -- latest and site state ---------------------------------------------------------------------


def test_latest_keeps_the_newest_round_even_when_backfill_arrives_later(store: Store) -> None:
    now = time.time()
    store.ingest(item_of(make_report(SITE, 2, n=2, ts=now - 10)))
    store.ingest(item_of(make_report(SITE, 1, n=2, ts=now - 3 * HOUR, ok=False)))
    latest = store.latest(SITE)
    assert set(latest) == {"link/fiber/icmp/t0", "link/fiber/icmp/t1"}
    assert latest["link/fiber/icmp/t0"].ok is True
    assert latest["link/fiber/icmp/t0"].ts == pytest.approx(now - 10)
    assert latest["link/fiber/icmp/t1"].values['icmp_rtt_seconds{stat="avg"}'] == pytest.approx(0.011)
    assert latest["link/fiber/icmp/t1"].labels == {"link": "fiber", "role": "primary", "target": "t1"}


def test_clock_offset_is_recorded_and_corrects_sample_times(store: Store) -> None:
    now = time.time()
    behind = make_report(SITE, 1, n=1, ts=now - 120 - 5, sent_at=now - 120)  # site clock 2 min slow
    store.ingest(item_of(behind, received_at=now))
    status = store.site_status()[SITE]
    assert status.clock_offset_s == pytest.approx(120)
    assert status.clock_flagged is True
    assert status.last_seq == 1 and status.instance == "inst-1"
    assert store.latest(SITE)["link/fiber/icmp/t0"].ts == pytest.approx(now - 5)
    fold_journal(store)
    (summary,) = store.summaries(now - HOUR, now + HOUR, [SITE])
    assert summary.first_ts == pytest.approx(now - 5)
    # three days off: placed on the collector's time all the same, flagged, never refused
    wild = make_report(SITE, 2, n=1, ts=now - 86400 * 3, sent_at=now - 86400 * 3 + 5)
    assert store.ingest(item_of(wild, received_at=now)).duplicate is False
    assert store.site_status()[SITE].clock_flagged is True
    assert store.latest(SITE)["link/fiber/icmp/t0"].ts == pytest.approx(now - 5)


# -- aggregation --------------------------------------------------------------------------------


def _spread_reports(n: int, start: float, step: float) -> list[Report]:
    return [Report(SITE, "inst-1", seq, start + seq * step + 1, "test",
                   sample_results(3, start + seq * step, ok=seq % 4 != 0)) for seq in range(1, n + 1)]


def _expected(reports: list[Report]) -> dict[tuple[str, float], tuple[int, int, int, float]]:
    folded = fold_results(SITE, [(r, r.ts) for rep in reports for r in rep.results])
    return {k: (s.rounds_ok, s.rounds_fail, s.values['icmp_rtt_seconds{stat="avg"}'].count,
                s.values['icmp_rtt_seconds{stat="avg"}'].sum) for k, s in folded.items()}


def _actual(store: Store) -> dict[tuple[str, float], tuple[int, int, int, float]]:
    return {(s.check, s.bucket_start): (s.rounds_ok, s.rounds_fail, s.values['icmp_rtt_seconds{stat="avg"}'].count,
                                        s.values['icmp_rtt_seconds{stat="avg"}'].sum)
            for s in store.summaries(0, 2e10, [SITE])}


def test_folding_in_steps_with_late_evidence_equals_folding_at_once(store: Store) -> None:
    start = bucket_of(time.time()) - 5 * HOUR
    reports = _spread_reports(60, start, 300.0)  # 5 hours of rounds
    live, late = reports[30:], reports[:30]  # the first half arrives late, after a fold
    for rep in live:
        store.ingest(item_of(rep, received_at=rep.sent_at))
    assert fold_journal(store) == 30
    for rep in late:
        store.ingest(item_of(rep, received_at=rep.sent_at))
    assert fold_journal(store, max_reports=10) == 10  # a bounded step folds only what it may
    assert fold_journal(store) == 20
    assert fold_journal(store) == 0
    assert store.stats().journal_reports == 0
    actual = _actual(store)
    expected = _expected(reports)
    assert actual.keys() == expected.keys()
    assert len({bucket for _, bucket in actual}) >= 5
    for key, (ok, fail, count, total) in expected.items():
        assert actual[key][:3] == (ok, fail, count)
        assert actual[key][3] == pytest.approx(total)


def test_racing_folders_fold_every_report_exactly_once(store_factory: Callable[..., Store]) -> None:
    writer = store_factory(sites_per_commit=1)
    writer.upsert_sites(SITES)
    others = [store_factory(sites_per_commit=1) for _ in range(2)]  # like other processes on the same database
    reports = []
    for site in SITES:
        for seq in range(1, 41):
            rep = Report(site.id, "i", seq, time.time(), "t", sample_results(2, time.time() - seq))
            reports.append(rep)
            writer.ingest(item_of(rep))
    barrier = threading.Barrier(3)
    folded: list[int] = []

    def fold(s: Store) -> None:
        barrier.wait()
        folded.append(fold_journal(s))

    threads = [threading.Thread(target=fold, args=(s,)) for s in [writer, *others]]
    [t.start() for t in threads]
    [t.join(60) for t in threads]
    assert sum(folded) == len(reports)
    assert writer.stats().journal_reports == 0
    for site in SITES:
        assert rounds(writer, site.id) == 80


def test_summaries_select_by_window_and_sites(store: Store) -> None:
    start = bucket_of(time.time()) - 3 * HOUR
    for site in SITES:
        rep = Report(site.id, "i", 1, start + 10, "t", sample_results(1, start + 10) + sample_results(1, start + HOUR + 10))
        store.ingest(item_of(rep, received_at=rep.sent_at))
    fold_journal(store)
    assert len(store.summaries(start, start + 2 * HOUR)) == 6
    only_first_hour = store.summaries(start + 60, start + HOUR)  # a window inside a bucket still gets it
    assert {(s.site, s.bucket_start) for s in only_first_hour} == {(s.id, start) for s in SITES}
    assert {s.site for s in store.summaries(start, start + 2 * HOUR, [SITE, "hue-thuan-hoa"])} == {SITE, "hue-thuan-hoa"}
    assert store.summaries(start + 5 * HOUR, start + 6 * HOUR) == []


def test_retention_prunes_old_summaries_and_idle_report_ids(store: Store) -> None:
    now = bucket_of(time.time())
    old = Report(SITE, "old", 1, now - 10 * 86400, "t", sample_results(2, now - 10 * 86400))
    new = Report(SITE, "new", 1, now - 60, "t", sample_results(2, now - 60))
    store.ingest(item_of(old, received_at=now - 10 * 86400))
    store.ingest(item_of(new, received_at=now - 60))
    fold_journal(store)
    pruned = prune_evidence(store, now, evidence_age=8 * 86400, seen_age=8 * 86400)
    assert pruned.summaries == 2 and pruned.report_ranges == 1
    assert {s.bucket_start for s in store.summaries(0, 2e10)} == {bucket_of(now - 60)}
    assert store.ingest(item_of(new, received_at=now)).duplicate is True
    assert prune_evidence(store, now, 8 * 86400, 8 * 86400).summaries == 0


def test_stats_report_backlog_and_last_fold(store: Store) -> None:
    assert store.stats().journal_reports == 0
    store.ingest(item_of(make_report(SITE, 1), received_at=1000.0))
    stats = store.stats()
    assert stats.journal_reports == 1 and stats.journal_oldest_received_at == 1000.0
    fold_journal(store)
    assert store.stats().last_aggregation_at is not None


def test_result_values_round_trip(store: Store) -> None:
    result = CheckResult("power/ups/snmp", "ups_snmp", time.time(), False, 0.2, reason="on battery: Điện lưới mất",
                         labels={"device": "ups-1", "location": "Phòng máy"},
                         values={"ups_battery_charge_ratio": 0.42, 'ups_input_voltage_volts{phase="1"}': 0.0})
    store.ingest(item_of(Report(SITE, "i", 1, time.time(), "t", [result])))
    got = store.latest(SITE)["power/ups/snmp"]
    assert (got.reason, got.labels, got.values) == (result.reason, result.labels, result.values)


def test_a_step_folds_each_site_once_with_all_its_reports(store_factory: Callable[..., Store]) -> None:
    """A site's reports of one step are folded together: one summary rewrite per site, not per report."""
    store = store_factory(sites_per_commit=1)
    store.upsert_sites(SITES)
    now = time.time()
    for seq in range(1, 5):  # the three sites' reports interleave in the journal, as they arrive
        for site in SITES:
            store.ingest(item_of(Report(site.id, "i", seq, now, "t", sample_results(2, now - 60 * seq))))
    before = store.write_stats.groups
    assert fold_journal(store) == 4 * len(SITES)
    assert store.write_stats.groups - before == len(SITES) + 1  # a transaction per site, and the run's mark
    assert rounds(store) == 4 * 2


def test_the_writer_counts_its_groups_and_time(store: Store) -> None:
    before = store.write_stats
    groups, jobs, held = before.groups, before.jobs, before.held_seconds
    store.ingest(item_of(make_report(SITE, seq=1)))
    after = store.write_stats
    assert after.groups == groups + 1 and after.jobs == jobs + 1
    assert after.held_seconds > held and after.lock_wait_seconds >= 0


def _gate_taken(db: Path) -> bool:
    """True while another open file holds the SQLite write gate (``<db>.write-lock``)."""
    import fcntl
    import os
    fd = os.open(db.with_name(db.name + ".write-lock"), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_sqlite_writers_hold_the_gate_exactly_around_their_write_transactions(tmp_path: Path) -> None:
    """Every writer of the file (server, aggregator, judge) queues on one flock, not on SQLite's busy sleeps."""
    from commune_collector.store.sqlite import SQLiteStore
    from commune_collector.store.verdicts import JudgeDb
    db = tmp_path / "collector.db"
    store = SQLiteStore(db)
    store.migrate()
    try:
        assert store._write(lambda conn: _gate_taken(db)) is True  # noqa: SLF001 - a job inside the transaction
        assert not _gate_taken(db)
        judge_db = JudgeDb(store.dialect_impl)
        with judge_db.tx():
            assert _gate_taken(db)
        with judge_db.tx(main=False):  # temporary tables only: ingest is not held back
            assert not _gate_taken(db)
        judge_db.close()
    finally:
        store.close()
