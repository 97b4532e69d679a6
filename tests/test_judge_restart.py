"""The judge after a restart, in memory: the collector's downtime is neither silence nor an outage.

The real-process version (a collector restarted over a store, a real Alertmanager) is
tests/test_collector_restart_silence.py; this one walks the same rule pass by pass.
"""

from __future__ import annotations

import numpy as np

from commune_collector.judge.facts import silent_sites
from testsupport.judge import H, ScriptedSite, World, criterion


def test_a_restart_after_downtime_waits_for_the_agents_before_calling_anyone_silent() -> None:
    world = World([ScriptedSite("back"), ScriptedSite("gone")])
    world.advance(world.start + 2 * H)
    assert world.verdict("back")["outage_cause"] is None
    down_at = world.now
    grace = world.config.restart_grace

    world.now = down_at + 600  # the collector was down 10 minutes: a new judge over the same store
    world.judge = world.new_judge()
    world.changes.clear()
    world.judge.add_listener(lambda changes, snapshot: world.changes.extend(changes))
    started = world.now
    for at in (started + 1, started + 120, started + grace - 1):
        world.judge_at(at)
        for site in ("back", "gone"):
            verdict = world.verdict(site)
            assert verdict["outage_cause"] is None and verdict["connectivity"] == "unknown", (site, at)
            reporting = criterion(verdict, "agent-reporting")
            assert reporting["met"] is None and "restarted" in reporting["reason"], (site, at)
    assert not [c for c in world.changes if c.kind == "site_silent"]

    # "back" reports again within the grace; "gone" does not
    world.record(down_at, started + grace - 10, [s for s in world.sites if s.id == "back"],
                 arrived=started + grace - 10)
    world.judge_at(started + grace + 1)
    back = world.verdict("back")
    assert back["outage_cause"] is None and back["connectivity"] == "primary"
    assert criterion(back, "agent-reporting")["met"] is True
    gone = world.verdict("gone")
    assert gone["outage_cause"] == "network" and criterion(gone, "agent-reporting")["met"] is False
    assert [c.site for c in world.changes if c.kind == "site_silent"] == ["gone"]


def test_silence_without_a_restart_is_unchanged() -> None:
    report_at = np.array([100.0, 500.0, np.nan])
    assert silent_sites(report_at, 600.0, 90.0, -np.inf, 330.0).tolist() == [True, True, False]
    assert silent_sites(report_at, 600.0, 90.0, 0.0, 330.0).tolist() == [True, True, False]  # started long ago
    # started at 400: the site last heard at 100 gets the grace, the one heard at 500 does not need it
    assert silent_sites(report_at, 600.0, 90.0, 400.0, 330.0).tolist() == [False, True, False]
    assert silent_sites(report_at, 731.0, 90.0, 400.0, 330.0).tolist() == [True, True, False]
