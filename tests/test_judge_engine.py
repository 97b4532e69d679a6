"""The judge's machinery: roll-ups, history, persistence across restarts, listeners, metrics, the matrix.

The scenarios (tests/test_scenarios.py) check what the judge concludes; these
check the parts that carry the conclusions: counts per province and
nationally, the daily series, the state a restarted collector resumes from,
the events listeners receive and the /metrics families.
"""

from __future__ import annotations

import asyncio
import random

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from commune_collector.evidence import CheckSummary, ValueStats, quantile
from commune_collector.judge import VerdictChange
from commune_collector.judge.hysteresis import S_COMPLETED, S_NOT_COMPLETED, S_UNKNOWN, Track, step
from commune_collector.judge.matrix import BucketRow, EvidenceMatrix, KeySpec
from commune_collector.judge.metrics import JudgeMetrics
from commune_collector.judge.source import row_from_summary
from commune_collector.reasons import catalogue, localize, reasons_text, transition_text
from testsupport.judge import T0, H, World, between, criterion, short_criteria
from testsupport.judge import ScriptedSite as S

START = T0 + 1800
PROVINCES = {"ha-noi": "Hà Nội", "hue": "Huế", "da-nang": "Đà Nẵng"}


def completed_world(*sites: S, **kwargs) -> World:
    """Sites judged over 3 h of evidence with 10-minute stable periods: settled verdicts."""
    world = World(list(sites), config=kwargs.pop("config", short_criteria()), start=START, provinces=PROVINCES,
                  **kwargs)
    for hour in (1, 2, 3):
        world.advance(START + hour * H)
    return world


# -- roll-ups -------------------------------------------------------------------------------


def test_province_and_national_roll_up() -> None:
    world = completed_world(S("hn-1"), S("hn-2"), S("hn-3", on_battery=lambda ts: True),
                            S("hue-1", province="hue"), inventory_only=[("hue-2", "hue")])
    rollup = world.judge.snapshot.rollup
    hanoi, hue, danang = (rollup.province(p) for p in ("ha-noi", "hue", "da-nang"))
    assert (hanoi.total, hanoi.completed, hanoi.not_completed, hanoi.unknown) == (3, 2, 1, 0)
    network = dict(hanoi.per_item["network"])
    assert network.pop("status_counts")["completed"] == 3
    assert network == {"completed": 3, "total": 3, "share": 1.0, "done": True}
    assert hanoi.status_counts == {"completed": 2, "not_completed": 1, "stabilising": 0,
                                   "insufficient_evidence": 0, "never_reported": 0}
    assert hue.status_counts["never_reported"] == 1, "the site without an agent never reported"
    assert hanoi.per_item["power"]["completed"] == 2 and not hanoi.per_item["power"]["done"]
    assert hanoi.done_items == ["network"]
    assert (hue.total, hue.completed, hue.unknown) == (2, 1, 1), "the site without an agent is in the total"
    assert not hue.per_item["network"]["done"]
    assert (danang.total, danang.per_item["network"]["done"]) == (0, False), "no sites is not done"
    national = rollup.national
    assert national["provinces_total"] == 3
    assert {k: v for k, v in national["per_item"]["network"].items() if k != "status_counts"} == {
        "provinces_done": 1, "provinces_total": 3, "label": "1/3"}
    assert national["status_counts"]["never_reported"] == 1 and national["status_counts"]["completed"] == 3
    assert national["per_item"]["power"]["label"] == "0/3"
    assert (national["sites_total"], national["sites_completed"]) == (5, 3)
    assert [p["slug"] for p in rollup.to_json()["provinces"]] == ["ha-noi", "hue", "da-nang"]


def test_done_share_lets_a_province_count_before_every_commune() -> None:
    config = short_criteria().model_copy(deep=True)
    items = dict(config.items)
    items["power"] = items["power"].model_copy(update={"done_share": 0.6})
    config = config.model_copy(update={"items": items})
    world = completed_world(S("a"), S("b"), S("c", on_battery=lambda ts: True), config=config)
    hanoi = world.judge.snapshot.rollup.province("ha-noi")
    assert hanoi.per_item["power"]["share"] == pytest.approx(2 / 3)
    assert hanoi.per_item["power"]["done"] is True


def test_national_count_uses_the_34_provinces_by_default() -> None:
    world = World([S("x")], config=short_criteria(), start=START)
    world.advance(START + H)
    rollup = world.judge.snapshot.rollup
    assert rollup.national["provinces_total"] == 34
    assert rollup.province("ha-noi").name == "Hà Nội"


# -- history --------------------------------------------------------------------------------


def test_history_has_a_row_per_day_toward_the_deadline() -> None:
    late = START + 30 * H
    world = World([S("a"), S("b", on_battery=lambda ts: ts < late)], config=short_criteria(), start=START,
                  provinces=PROVINCES)
    passes = [START + hour * H for hour in range(1, 34, 2)]
    for t in passes:
        world.advance(t)
    history = world.judge.history(days=35, now=world.now)
    days = [p["date"] for p in history["series"]]
    assert days == sorted({world.judge.day_of(t) for t in passes}), "one row per (Vietnam) day"
    assert len(days) == 3
    first, middle, last = history["series"]
    assert (first["completed"], first["unknown"], first["not_completed"]) == (0, 1, 1), "a: not yet stable"
    assert (middle["completed"], middle["not_completed"], middle["total"]) == (1, 1, 2)
    assert (last["completed"], last["total"]) == (2, 2)
    assert last["provinces_done"] == {"network": 1, "power": 1}
    assert middle["provinces_done"] == {"network": 1, "power": 0}
    province = world.judge.history("ha-noi", days=35, now=world.now)
    assert province["series"][-1]["provinces_done"] == {"network": 1, "power": 1}
    assert world.judge.history(days=1, now=world.now)["series"] == [last]


def test_history_older_than_retention_is_pruned() -> None:
    world = World([S("a")], config=short_criteria(), start=START)
    world.advance(START + H)
    world.verdicts.days[("2000-01-01", "")] = {"total": 1, "completed": 0, "not_completed": 1, "unknown": 0}
    world.advance(START + 26 * H)  # a new day: prune runs
    assert ("2000-01-01", "") not in world.verdicts.days


# -- persistence ----------------------------------------------------------------------------


def test_a_restarted_judge_resumes_stable_clocks_and_regressions() -> None:
    world = World([S("a")], config=short_criteria(stable="1h"), start=START)
    world.advance(START + H)
    candidate = world.verdict("a")["candidate_since"]
    assert world.verdict("a")["state"] == "unknown" and candidate is not None
    world.judge = world.new_judge()  # the collector restarts: a new judge on the same database
    world.advance(START + 1.5 * H)
    assert world.verdict("a")["candidate_since"] == candidate, "the stable clock was reset by a restart"
    world.advance(START + 2.5 * H)
    assert world.verdict("a")["state"] == "completed"
    world.sites = [S("a", primary_loss=lambda ts: 0.3)]
    world.advance(START + 3.5 * H)
    assert world.verdict("a")["state"] == "not_completed"
    world.judge = world.new_judge()
    world.advance(START + 3.6 * H)
    verdict = world.verdict("a")
    assert [r["to"] for r in verdict["regressions"]] == ["not_completed"], "regressions forgotten on restart"
    assert world.judge.regressions_total == 1


# -- listeners and events -------------------------------------------------------------------


def test_listeners_get_changes_and_a_lazy_snapshot() -> None:
    world = completed_world(S("a"), S("b"))
    seen: list[tuple[list[VerdictChange], object]] = []
    world.judge.add_listener(lambda changes, snapshot: seen.append((changes, snapshot)))
    world.sites = [S("a", on_battery=lambda ts: ts > START + 3 * H), S("b")]
    world.advance(START + 3.5 * H)
    [(changes, snapshot)] = seen
    assert [(c.site, c.kind, c.criterion) for c in changes] == [("a", "regression", "mains-power"),
                                                                ("a", "on_battery", "mains-power")]
    assert set(snapshot) == {"a", "b"} and len(snapshot) == 2
    view = snapshot["a"]
    assert (view.site, view.province, view.state) == ("a", "ha-noi", "not_completed")
    assert criterion(view.model_dump(), "mains-power")["met"] is False


def test_async_listeners_are_awaited() -> None:
    world = completed_world(S("a"))
    got: list[int] = []

    async def listener(changes: list[VerdictChange], snapshot: object) -> None:
        await asyncio.sleep(0)
        got.append(len(snapshot))  # type: ignore[arg-type]

    world.judge.add_listener(listener)
    asyncio.run(world.judge.arun_pass(START + 3.2 * H))
    world.judge_at(START + 3.3 * H)
    assert got == [1, 1]


def test_a_failing_listener_does_not_stop_the_others() -> None:
    world = completed_world(S("a"))
    got = []

    def broken(changes: object, snapshot: object) -> None:
        raise RuntimeError("listener bug")

    world.judge.add_listener(broken)
    world.judge.add_listener(lambda changes, snapshot: got.append(1))
    world.judge_at(START + 3.2 * H)
    assert got == [1]


# -- metrics --------------------------------------------------------------------------------


def test_metrics_expose_verdicts_criteria_roll_ups_and_regressions() -> None:
    world = completed_world(S("a"), S("b", on_battery=lambda ts: True), S("c", province="hue"))
    registry = CollectorRegistry()
    registry.register(JudgeMetrics(world.judge))
    value = registry.get_sample_value
    assert value("commune_site_verdict", {"site": "a", "province": "ha-noi", "state": "completed"}) == 1.0
    assert value("commune_site_verdict", {"site": "b", "province": "ha-noi", "state": "not_completed"}) == 1.0
    assert value("commune_site_verdict", {"site": "b", "province": "ha-noi", "state": "completed"}) is None
    labels = {"site": "b", "province": "ha-noi", "criterion": "mains-power", "item": "power"}
    assert value("commune_site_criterion_met", labels) == 0.0
    assert value("commune_site_criterion_met", {**labels, "criterion": "primary-loss", "item": "network"}) == 1.0
    assert value("commune_province_sites_completed", {"province": "ha-noi", "item": "power"}) == 1.0
    assert value("commune_province_sites_completed", {"province": "ha-noi", "item": "overall"}) == 1.0
    assert value("commune_province_sites", {"province": "ha-noi"}) == 2.0
    assert value("commune_province_item_done", {"province": "hue", "item": "power"}) == 1.0
    assert value("commune_province_item_done", {"province": "ha-noi", "item": "power"}) == 0.0
    assert value("commune_national_provinces_done", {"item": "power"}) == 1.0
    assert value("commune_national_provinces") == 3.0
    assert value("commune_site_regressions_total", {"site": "a", "province": "ha-noi"}) == 0.0
    assert value("commune_judge_passes_total") == 3.0
    world.sites = [S("a", primary_loss=lambda ts: 0.5), S("b", on_battery=lambda ts: True), S("c", province="hue")]
    world.advance(START + 4 * H)
    assert value("commune_site_regressions_total", {"site": "a", "province": "ha-noi"}) == 1.0
    assert value("commune_judge_regressions_total") == 1.0


def test_unknown_criteria_are_absent_from_metrics() -> None:
    world = World([S("a", has_ups=False)], config=short_criteria(), start=START)
    world.advance(START + H)
    registry = CollectorRegistry()
    registry.register(JudgeMetrics(world.judge))
    labels = {"site": "a", "province": "ha-noi", "criterion": "mains-power", "item": "power"}
    assert registry.get_sample_value("commune_site_criterion_met", labels) is None


# -- hysteresis and matrix, directly -------------------------------------------------------------


def test_hysteresis_step_by_step() -> None:
    track = Track.fresh(3, 0.0)
    met, failed, unknown = np.array([1, 1, 1]), np.array([0, 0, 0]), np.array([-1, -1, -1])
    s = step(track, met, 10.0, 100.0)
    assert s.track.state.tolist() == [S_UNKNOWN] * 3 and s.track.candidate.tolist() == [10.0] * 3
    s = step(s.track, met, 110.0, 100.0)
    assert s.track.state.tolist() == [S_COMPLETED] * 3 and s.changed.all()
    s = step(s.track, np.array([0, -1, 1]), 120.0, 100.0)
    assert s.track.state.tolist() == [S_NOT_COMPLETED, S_UNKNOWN, S_COMPLETED]
    assert s.regressed.tolist() == [True, False, False]
    s = step(s.track, np.array([1, 0, 1]), 130.0, 100.0)
    assert s.regressed.tolist() == [False, True, False], "completed -> unknown -> not_completed regresses"
    assert s.track.state.tolist() == [S_NOT_COMPLETED, S_NOT_COMPLETED, S_COMPLETED]
    s = step(s.track, met, 230.0, 100.0)
    assert s.recovered.tolist() == [True, False, False]
    assert step(s.track, unknown, 240.0, 100.0).track.state.tolist() == [S_UNKNOWN] * 3
    assert step(s.track, failed, 240.0, 100.0).track.candidate.tolist() == [None] * 3 or \
        np.isnan(step(s.track, failed, 240.0, 100.0).track.candidate).all()


def test_matrix_quantiles_match_the_evidence_quantiles() -> None:
    """The vectorised p95 over merged buckets equals collector.evidence.quantile on the same data."""
    rng = random.Random(7)
    key = 'icmp_rtt_seconds{stat="avg"}'
    matrix = EvidenceMatrix(3600, 86400, {key: KeySpec(86400, lambda *a: True, lambda *a: True, (0.03,))})
    rows, stats_by_check = [], {}
    for check in range(20):
        stats_by_check[check] = []
        for hour in range(24):
            stats = ValueStats()
            for _ in range(rng.randint(1, 120)):
                stats.add(rng.lognormvariate(-3.5, 0.8), T0 + hour * 3600 + 1, True)
            stats_by_check[check].append(stats)
            s = CheckSummary("s", f"c{check}", "icmp", T0 + hour * 3600, {}, 10, 0, T0 + hour * 3600,
                             T0 + hour * 3600 + 3000, "", {key: stats})
            rows.append(row_from_summary(s))
    matrix.load([rows], T0 + 23.5 * 3600)
    view = matrix.view(np.arange(20), 86400, T0 + 23.5 * 3600, 30)
    for q in (0.5, 0.95, 0.99):
        got = view.quantile(key, q)
        want = [quantile(stats_by_check[c], q) for c in range(20)]
        assert got == pytest.approx(want, rel=1e-9), q


def test_matrix_keeps_the_newest_bucket_and_ignores_what_is_older_than_its_ring() -> None:
    matrix = EvidenceMatrix(3600, 2 * 3600)  # slots for 2h + 2
    now = T0 + 10 * 3600 + 60

    def row(bucket: float, ok: int) -> BucketRow:
        return BucketRow(bucket, "s", "c", "icmp", {}, ok, 0, bucket, bucket + 60, "", {})

    assert matrix.load([[row(T0, 5)]], now) == 0, "older than the ring: ignored"
    assert matrix.load([[row(T0 + 10 * 3600, 5), row(T0 + 8 * 3600, 7)]], now) == 2
    view = matrix.view(np.array([0]), 3600, now, 30)
    assert view.ok.tolist() == [5]
    assert matrix.load([[row(T0 + 10 * 3600, 5)]], now) == 0, "unchanged bucket: not rewritten"
    assert matrix.load([[row(T0 + 10 * 3600, 6)]], now) == 1


def test_regression_event_names_every_failing_criterion() -> None:
    world = completed_world(S("a"))
    world.sites = [S("a", primary_down=between(START + 3 * H, START + 9 * H), on_battery=lambda ts: ts > START + 3 * H)]
    world.advance(START + 3.5 * H)
    [event] = [c for c in world.changes if c.kind == "regression"]
    assert set(event.criteria) == {"primary-availability", "primary-loss", "mains-power"}
    assert event.criterion in event.criteria and "availability" in event.detail


def test_verdict_changes_carry_their_reasons_as_data_rendered_in_either_language() -> None:
    """A regression's and a fact's reasons are codes with parameters: the pages and the API render them
    in the reader's language, the stored transition keeps them across a restart, ``detail`` stays English."""
    world = completed_world(S("a"))
    world.sites = [S("a", primary_down=between(START + 3 * H, START + 9 * H), on_battery=lambda ts: ts > START + 3 * H)]
    world.advance(START + 3.5 * H)
    by_kind = {c.kind: c for c in world.changes}
    regression, battery = by_kind["regression"], by_kind["on_battery"]
    assert [r["criterion"] for r in regression.reasons] == list(regression.criteria)
    assert all(r["code"] in catalogue() for r in regression.reasons)
    assert regression.detail == reasons_text(regression.reasons, "en")
    vietnamese = reasons_text(regression.reasons, "vi")
    assert "đo được" in vietnamese and "threshold" not in vietnamese and "over" not in vietnamese, vietnamese
    assert battery.reasons == ({"code": "on_battery", "params": {}},) and battery.detail == "UPS on battery"
    assert reasons_text(battery.reasons, "vi") == "UPS đang chạy bằng pin (mất điện lưới)"

    world.judge = world.new_judge()  # read back from the store, not from the judge's memory
    world.advance(START + 3.6 * H)
    [shown] = world.verdict("a")["regressions"]
    assert shown["reasons"] == list(regression.reasons)
    assert transition_text(shown, "vi") == vietnamese
    assert transition_text({**shown, "reasons": []}, "vi") == "", "an old English-only row never reaches a vi reader"
    assert transition_text({**shown, "reasons": []}, "en") == regression.detail
    assert localize({"regressions": [shown]}, "vi")["regressions"][0]["detail"] == vietnamese
