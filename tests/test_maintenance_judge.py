"""Quiet time in the judge: declared maintenance (and, with upstream.counts false, upstream outages)
counts neither for nor against a commune.

Two communes suffer the same hour-long power cut (UPS on battery, primary link
down); one had it declared. The declared one keeps its verdict through it and
its availability over the day does not count the cut; the other regresses.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from commune_collector.judge.quiet import QuietTime, UpstreamSpans
from commune_collector.maintenance.windows import MaintenanceWindow
from testsupport.judge import T0, H, World, between, criterion, short_criteria
from testsupport.judge import ScriptedSite as S

START = T0 - 5.5 * H  # six hours of good evidence before the cut
CUT = (T0 + 3.5 * H, T0 + 4.5 * H)  # does not start on the hour: the buckets it touches are left out
SIX_HOURS = """
  - id: primary-availability-6h
    item: network
    title: {en: Primary up over 6h, vi: Đường truyền chính 6 giờ}
    select: {probe: icmp, role: primary}
    expr: availability(6h) >= 99%
"""


def window(sites: tuple[str, ...], start: float, end: float, **kwargs) -> MaintenanceWindow:
    return MaintenanceWindow(id=kwargs.pop("id", "mw-test"), scope="sites", targets=sites, sites=sites,
                             provinces=("ha-noi",), starts_at=start, ends_at=end, reason="EVN cắt điện theo lịch",
                             created_by="tester", created_at=start - H, **kwargs)


def cut_site(site_id: str, province: str = "ha-noi") -> S:
    return S(site_id, province=province, on_battery=between(*CUT), primary_down=between(*CUT))


def world_with(*sites: S, windows: list[MaintenanceWindow]) -> World:
    world = World(list(sites), config=short_criteria(extra=SIX_HOURS), start=START)
    world.evidence.windows = windows
    for hour in range(1, 10):
        world.advance(START + hour * H)  # up to the start of the cut
    return world


def test_a_declared_cut_keeps_the_verdict_and_the_other_regresses() -> None:
    world = world_with(cut_site("declared"), cut_site("undeclared"), windows=[window(("declared",), *CUT)])
    assert world.verdict("declared")["state"] == world.verdict("undeclared")["state"] == "completed"
    world.advance(CUT[0] + 1800)
    declared, undeclared = world.verdict("declared"), world.verdict("undeclared")
    assert undeclared["state"] == "not_completed"
    assert declared["state"] == "completed" and declared["status"] == "completed"
    assert declared["maintenance"]["window"] == "mw-test"
    assert declared["maintenance"]["reason"] == "EVN cắt điện theo lịch"
    assert declared["maintenance"]["held_until"] == T0 + 5 * H, "held to the end of the hour the cut ends in"
    assert undeclared["maintenance"] is None
    regressions = {c.site for c in world.changes if c.kind == "regression"}
    assert regressions == {"undeclared"}


def test_after_the_window_the_day_does_not_count_the_declared_cut() -> None:
    world = world_with(cut_site("declared"), cut_site("undeclared"), windows=[window(("declared",), *CUT)])
    for t in (CUT[0] + 1800, CUT[1], T0 + 5 * H, T0 + 5 * H + 60, T0 + 6 * H):
        world.advance(t)
        assert world.verdict("declared")["state"] == "completed", t
    declared, undeclared = world.verdict("declared"), world.verdict("undeclared")
    assert declared["maintenance"] is None, "no longer held once the hour the cut ended in is over"
    honest = criterion(declared, "primary-availability-6h")
    assert honest["met"] is True and honest["value"] == 1.0, "the cut is not counted as down"
    assert honest["coverage"] > 0.95, "the hours left out are not expected either"
    blamed = criterion(undeclared, "primary-availability-6h")
    assert blamed["met"] is False and blamed["value"] < 0.9
    assert {c.site for c in world.changes if c.kind == "regression"} == {"undeclared"}


def test_a_cancelled_window_stops_holding_at_once() -> None:
    declared = window(("declared",), *CUT)
    world = world_with(cut_site("declared"), windows=[declared])
    world.advance(CUT[0] + 600)
    assert world.verdict("declared")["maintenance"] is not None
    world.evidence.windows = [declared.cancelled(CUT[0] + 900, "tester")]
    world.advance(CUT[0] + 1200)
    assert world.verdict("declared")["maintenance"]["held_until"] == T0 + 4 * H, "to the end of its hour"
    world.advance(T0 + 4 * H + 600)
    verdict = world.verdict("declared")
    assert verdict["maintenance"] is None
    assert verdict["state"] == "not_completed", "the cut after the cancellation counts again"


def test_a_window_in_the_future_changes_nothing_yet() -> None:
    world = world_with(cut_site("declared"), windows=[window(("declared",), CUT[0] + 6 * H, CUT[1] + 6 * H)])
    world.advance(CUT[0] + 1800)
    assert world.verdict("declared")["state"] == "not_completed"
    assert world.verdict("declared")["maintenance"] is None


def test_a_recurring_window_holds_each_occurrence() -> None:
    daily = window(("declared",), CUT[0] - 24 * H, CUT[1] - 24 * H, every="day", until=CUT[1] + 24 * H)
    world = world_with(cut_site("declared"), windows=[daily])
    world.advance(CUT[0] + 1800)
    assert world.verdict("declared")["state"] == "completed"
    assert world.verdict("declared")["maintenance"]["starts_at"] == CUT[0]


def test_a_declared_province_cut_is_not_an_upstream_outage() -> None:
    sites = [cut_site(f"hn-{i}") for i in range(6)]
    planned = window(tuple(s.id for s in sites), *CUT)
    for windows, events in (([], 1), ([planned], 0)):
        world = world_with(*[S(s.id, province="ha-noi", primary_down=between(*CUT)) for s in sites],
                           windows=windows)
        world.advance(CUT[0] + 600)
        assert len(world.judge.snapshot.fleet_summary()["upstream"]) == events


def test_an_inventory_upstream_group_makes_one_event_below_the_province_share() -> None:
    behind = [S(f"hn-agg-{i}", primary_down=between(*CUT), upstream="agg-soc-son") for i in range(5)]
    others = [S(f"hn-{i}") for i in range(20)]
    world = world_with(*behind, *others, windows=[])
    world.advance(CUT[0] + 600)
    events = world.judge.snapshot.fleet_summary()["upstream"]
    assert [(e["key"], e["sites"], e["reporting"]) for e in events] == [("group:agg-soc-son", 5, 5)]
    assert world.verdict("hn-agg-0")["outage_cause"] == "upstream"
    assert world.verdict("hn-0")["outage_cause"] is None


@pytest.mark.parametrize("counts", [True, False])
def test_upstream_time_counts_against_a_commune_only_when_the_criteria_say_so(counts: bool) -> None:
    cut = [S(f"hn-{i}", primary_down=between(*CUT)) for i in range(6)]
    config = short_criteria(extra=SIX_HOURS + f"\nupstream: {{counts: {str(counts).lower()}}}\n")
    world = World(cut, config=config, start=START)
    for hour in range(1, 10):
        world.advance(START + hour * H)
    for t in (CUT[0] + 600, CUT[0] + 1800, CUT[1], T0 + 5 * H + 60, T0 + 6 * H):
        world.advance(t)
        if t < CUT[1]:
            assert world.verdict("hn-0")["outage_cause"] == "upstream", t
    verdict = world.verdict("hn-0")
    availability = criterion(verdict, "primary-availability-6h")
    regressed = {c.site for c in world.changes if c.kind == "regression"}
    if counts:
        assert availability["met"] is False and regressed == {s.id for s in cut}
    else:
        assert availability["met"] is True and availability["value"] == 1.0 and not regressed
        assert verdict["state"] == "completed" and verdict["maintenance"] is None, "upstream is not maintenance"


def test_quiet_time_counts_overlapping_windows_once() -> None:
    a = window(("s1",), T0, T0 + 2 * H, id="a")
    b = window(("s1", "s2"), T0 + H, T0 + 3 * H, id="b")
    quiet = QuietTime.from_windows([a, b], {"s1": 0, "s2": 1, "s3": 2}, 3, T0 - H, T0 + 10 * H, H)
    seconds = quiet.hidden_seconds(np.array([0, 1, 2]), T0 - H, T0 + 10 * H)
    assert seconds.tolist() == [3 * H, 2 * H, 0.0]
    buckets = np.array([[T0 - H, T0, T0 + 2 * H, T0 + 3 * H]] * 3)
    assert quiet.hidden(buckets, np.array([0, 1, 2])).tolist() == [
        [False, True, True, False], [False, False, True, False], [False, False, False, False]]
    assert quiet.held(T0 + 2.5 * H).tolist() == [True, True, False]


def test_upstream_spans_extend_close_survive_a_checkpoint_and_are_forgotten() -> None:
    spans = UpstreamSpans.empty()
    event = {"key": "province:hue", "started_at": T0, "name": "hue"}
    spans.record([event], {"province:hue": ("a", "b")}, T0 + 60, keep=24 * H)
    spans.record([event], {"province:hue": ("b", "c")}, T0 + 120, keep=24 * H)
    spans.record([], {}, T0 + 180, keep=24 * H)  # gone: closed at the last pass that saw it
    restored = UpstreamSpans.from_json(json.loads(json.dumps(spans.to_json())))
    (quiet,) = restored.quiet({"a": 0, "b": 1, "c": 2, "d": 3}, H)
    assert quiet.sites.tolist() == [0, 1, 2] and (quiet.starts_at, quiet.ends_at) == (T0, T0 + 120)
    assert (quiet.start, quiet.end, quiet.kind) == (T0, T0 + H, "upstream")
    restored.record([], {}, T0 + 30 * H, keep=24 * H)
    assert restored.spans == {}
