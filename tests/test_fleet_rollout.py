"""Staged rollouts: the share chosen by the site id's hash, the halt rule, and the lifecycle on both databases
(start, serve per site, count, halt by itself, widen, promote, roll back, history)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from commune_collector.fleet.db import FleetDb
from commune_collector.fleet.desired import ProfileSource
from commune_collector.fleet.rollout import Group, HaltRule, bucket, halt_reason, is_canary
from commune_collector.fleet.rollout_db import RolloutDb
from commune_collector.fleet.rollouts import (
    RolloutError,
    evaluate,
    promote,
    rollback,
    serving,
    start,
    status,
)
from commune_collector.fleet.settings import FleetSettings, RolloutSettings
from commune_collector.store.base import Store
from tests.fleet_support import loopback_profile, sites, write_profile
from tests.test_store import postgres, store_factory  # noqa: F401 - shared fixtures (both backends)

SITES = sites(20)
RULE = HaltRule(min_results=100, fail_margin=0.05, fail_ratio=2.0, min_sites=3, silent_margin=0.25)

# -- the share ---------------------------------------------------------------------------------------------


def test_a_sites_place_is_fixed_by_its_id_and_a_wider_share_keeps_the_first_canaries() -> None:
    ids = [f"site-{i:05d}" for i in range(10_000)]
    assert [bucket(s) for s in ids[:50]] == [bucket(s) for s in ids[:50]]  # the same every time
    quarter = {s for s in ids if is_canary(s, "ha-noi", 25, ())}
    half = {s for s in ids if is_canary(s, "ha-noi", 50, ())}
    assert 2_300 <= len(quarter) <= 2_700 and 4_800 <= len(half) <= 5_200
    assert quarter < half  # widening adds canaries, never swaps them
    assert all(is_canary(s, "ha-noi", 100, ()) for s in ids)


def test_chosen_provinces_take_the_whole_share_and_the_others_none() -> None:
    assert is_canary("x", "hue", 100, ("hue",)) and not is_canary("x", "ha-noi", 100, ("hue",))
    assert not any(is_canary(f"s{i}", "ha-noi", 100, ("hue", "dak-lak")) for i in range(100))


# -- the halt rule -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("new", "old", "halts"), [
    (Group(99, 99, 5, 5), Group(1000, 0, 15, 15), None),  # too few results yet: every one failing halts nothing
    (Group(100, 34, 5, 5), Group(1000, 0, 15, 15), "fail 34.0% of 100"),  # a broken check: +34 points
    (Group(200, 8, 5, 5), Group(1000, 30, 15, 15), None),  # 4 % vs 3 %: not markedly more
    (Group(200, 32, 5, 5), Group(1000, 100, 15, 15), None),  # 16 % vs 10 %: +6 points but not twice
    (Group(200, 42, 5, 5), Group(1000, 100, 15, 15), "fail 21.0%"),  # 21 % vs 10 %: both
    (Group(0, 0, 4, 2), Group(0, 0, 16, 16), "2 of 4 canary sites stopped reporting"),  # half silent vs none
    (Group(0, 0, 5, 4), Group(0, 0, 15, 15), None),  # one of five: 20 %, under the 25 % bound ...
    (Group(0, 0, 2, 0), Group(0, 0, 16, 16), None),  # ... and two canaries are too few to judge
    (Group(0, 0, 4, 2), Group(0, 0, 16, 8), None),  # the network, not the version: both halves silent
])
def test_the_halt_rule(new: Group, old: Group, halts: str | None) -> None:
    reason = halt_reason(new, old, RULE)
    assert (reason is None) == (halts is None), reason
    if halts:
        assert halts in reason  # type: ignore[operator]


def test_the_silent_bound_is_inclusive() -> None:
    assert halt_reason(Group(0, 0, 4, 3), Group(0, 0, 16, 16), HaltRule(silent_margin=0.25)) is not None
    assert halt_reason(Group(0, 0, 4, 3), Group(0, 0, 16, 16), HaltRule(silent_margin=0.26)) is None


# -- the lifecycle on both databases ------------------------------------------------------------------------------


@pytest.fixture
def fleet(store_factory: Callable[..., Store], tmp_path: Path  # noqa: F811
          ) -> Iterator[tuple[Store, RolloutDb, ProfileSource, Path]]:
    store = store_factory()
    store.upsert_sites(SITES)
    profile = write_profile(tmp_path / "profile.yaml", 9)
    fleet_db = FleetDb(store)
    yield store, RolloutDb(fleet_db.db), ProfileSource(FleetSettings(profile=profile)), profile
    fleet_db.close()


def _versions(source: ProfileSource) -> dict[str, str | None]:
    return {s.id: source.version(s) for s in SITES}


def test_a_rollout_serves_its_canaries_halts_by_itself_and_rolls_back(fleet: tuple) -> None:
    store, db, source, _ = fleet
    old = _versions(source)
    candidate = loopback_profile(9, extra_target=True)
    began = start(db, source, SITES, candidate, "candidate.yaml", 25, (), "add a check", "tester", time.time())
    canaries = {s.id for s in SITES if is_canary(s.id, s.province, 25, ())}
    assert began.touched == 20 and began.canaries == len(canaries) > 0
    with pytest.raises(RolloutError, match="still running") as again:
        start(db, source, SITES, candidate, "c.yaml", 50, (), "", "tester", time.time())
    assert again.value.status == 409

    serving(db, source)
    new = _versions(source)
    assert {s for s in new if new[s] != old[s]} == canaries  # the others keep being served the old version

    rows = {r.site: r for r in db.sites(began.rollout.id)}
    assert all(rows[s].old_version == old[s] and rows[s].new_version == new[s] for s in canaries)
    settings = RolloutSettings(min_results=10)
    db.add_counts(began.rollout.id, {s: (0, 0, 10, 5) for s in canaries} | {s: (10, 0, 0, 0) for s in old
                                                                          if s not in canaries})
    reason = evaluate(db, settings, time.time())
    assert reason and "fail 50.0%" in reason
    assert evaluate(db, settings, time.time()) is None  # halted once, by one replica

    serving(db, source)
    assert _versions(source) == old  # the canaries are served the old version again
    shown = status(db, source, None, settings, time.time())
    assert shown["state"] == "halted" and shown["new"]["fail_rate"] == 0.5 and shown["old"]["fail_rate"] == 0.0
    assert [e["action"] for e in shown["history"]] == ["started", "halted"]
    assert shown["history"][1]["actor"] == "collector" and shown["halt_reason"] == reason
    with pytest.raises(RolloutError, match="halted by itself"):
        promote(db, None, None, False, "tester", time.time())
    rollback(db, None, "the new check is wrong", "tester", time.time())
    serving(db, source)
    assert source.serving is None and _versions(source) == old
    assert db.events(began.rollout.id)[-1].detail == "the new check is wrong"


def test_a_rollout_widens_then_promotes_and_the_file_takes_over_when_it_changes(fleet: tuple) -> None:
    store, db, source, profile = fleet
    old = _versions(source)
    candidate = loopback_profile(9, extra_target=True)
    began = start(db, source, SITES, candidate, "candidate.yaml", 10, (), "", "tester", time.time())
    with pytest.raises(RolloutError, match="larger percent"):
        promote(db, None, 5, False, "tester", time.time())
    promote(db, None, 60, False, "tester", time.time())
    assert sum(r.canary for r in db.sites(began.rollout.id)) == sum(
        is_canary(s.id, s.province, 60, ()) for s in SITES)
    promote(db, None, None, False, "tester", time.time())
    serving(db, source)
    promoted = _versions(source)
    assert all(promoted[s] != old[s] for s in old)  # every site: the candidate is the profile now
    assert [e.action for e in db.events(began.rollout.id)] == ["started", "widened", "promoted"]

    # the file still holds the old profile: the promoted candidate wins; an edited file takes over
    write_profile(profile, 9, timeout="400ms")
    assert _versions(source) != promoted and all(v is not None for v in _versions(source).values())


@pytest.mark.parametrize(("change", "message"), [
    ({"candidate": "links: [1"}, "candidate.yaml:1"),
    ({"candidate": "same"}, "changes no site's config"),
    ({"provinces": ("atlantis",)}, "unknown province(s) atlantis"),
    ({"provinces": ("hue",)}, "is no site"),
    ({"percent": 0.0}, "above 0"),
])
def test_a_bad_start_says_what_to_fix(fleet: tuple, change: dict, message: str) -> None:
    store, db, source, profile = fleet
    args = {"candidate": loopback_profile(9, extra_target=True), "percent": 25.0, "provinces": ()} | change
    if args["candidate"] == "same":
        args["candidate"] = profile.read_text(encoding="utf-8")
    with pytest.raises(RolloutError) as refused:
        start(db, source, SITES, args["candidate"], "candidate.yaml", args["percent"], args["provinces"], "",
              "tester", time.time())
    assert message in str(refused.value) and refused.value.status == 422
    assert db.open() is None
