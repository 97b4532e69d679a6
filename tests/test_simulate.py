"""The fleet simulator against a real collector, and the upstream-outage detector it exercises.

The end-to-end test runs a few hundred simulated sites through every incident
kind (backbone cut, power cut with UPS run-down, flapping, never installed,
new installs, skewed clocks) into ``commune-collector serve`` and compares
the verdicts with the simulator's ground truth: no false "completed", every
state and cause right.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from commune_collector.generate import generate_sites
from commune_collector.judge.facts import (
    CAUSE_NONE,
    CAUSE_POWER,
    CAUSE_UPSTREAM,
    CONN_BACKUP_ONLY,
    CONN_PRIMARY,
    Facts,
)
from commune_collector.judge.upstream import UpstreamDetector, _densest
from commune_collector.simulate import fleet as fleet_mod
from commune_collector.simulate.check import compare, fetch_verdicts
from commune_collector.simulate.driver import truth_document
from commune_collector.simulate.fleet import build_fleet
from testsupport.collector import CLI, CollectorPeer
from testsupport.peers._base import wait_until

ROOT = Path(__file__).resolve().parents[1]


# -- upstream detection (unit) -----------------------------------------------------------------


def _facts(conn: list[int], on_battery: list[float] | None = None, silent: list[bool] | None = None) -> Facts:
    n = len(conn)
    return Facts(np.array(conn, dtype=np.int8), np.where(np.array(conn) == CONN_PRIMARY, 0, 2).astype(np.int8),
                 np.array(on_battery or [0.0] * n), np.array(silent or [False] * n), np.zeros(0, dtype=np.int64),
                 np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int8))


def test_densest_run_within_a_span():
    times = [(0.0, "a"), (10.0, "b"), (400.0, "c"), (410.0, "d"), (420.0, "e")]
    assert [s for _, s in _densest(times, 300.0)] == ["c", "d", "e"]
    assert _densest([], 300.0) == []


def test_a_province_losing_its_path_together_is_one_upstream_event():
    ids = [f"p-{i}" for i in range(10)] + [f"q-{i}" for i in range(10)]
    provinces = ["p"] * 10 + ["q"] * 10
    conn = [CONN_BACKUP_ONLY] * 6 + [CONN_PRIMARY] * 4 + [CONN_BACKUP_ONLY] * 2 + [CONN_PRIMARY] * 8
    facts = _facts(conn)
    events = UpstreamDetector().apply(facts, ids, provinces, [None] * 20, np.full(20, 1000.0), 1000.0)
    assert [e.key for e in events] == ["province:p"]
    assert events[0].share == pytest.approx(0.6) and events[0].reporting == 10
    assert (facts.outage_cause[:6] == CAUSE_UPSTREAM).all()
    assert (facts.outage_cause[10:12] != CAUSE_UPSTREAM).all()  # two of ten in q: their own outages
    assert facts.upstream[0] == 0 and facts.upstream[10] == -1


def test_losses_spread_over_time_or_on_battery_are_not_upstream():
    ids = [f"p-{i}" for i in range(10)]
    detector = UpstreamDetector()
    for k in range(6):  # one more site lost every 10 minutes
        conn = [CONN_BACKUP_ONLY] * (k + 1) + [CONN_PRIMARY] * (9 - k)
        facts = _facts(conn)
        events = detector.apply(facts, ids, ["p"] * 10, [None] * 10, np.full(10, 0.0), 600.0 * k)
    assert events == [] and not (facts.outage_cause == CAUSE_UPSTREAM).any()
    facts = _facts([CONN_BACKUP_ONLY] * 10, on_battery=[1.0] * 10)
    facts.outage_cause[:] = CAUSE_POWER
    assert UpstreamDetector().apply(facts, ids, ["p"] * 10, [None] * 10, np.full(10, 0.0), 0.0) == []
    assert (facts.outage_cause == CAUSE_POWER).all()


def test_silence_alone_makes_no_event_but_joins_one():
    ids = [f"s{i}" for i in range(10)]
    facts = _facts([0] * 10, silent=[True] * 10)  # the collector hears nobody: its own problem
    assert UpstreamDetector().apply(facts, ids, ["p"] * 10, [None] * 10, np.zeros(10), 0.0) == []
    facts = _facts([CONN_BACKUP_ONLY] * 5 + [0] * 5, silent=[False] * 5 + [True] * 2 + [False] * 3)
    events = UpstreamDetector().apply(facts, ids, ["p"] * 10, [None] * 10, np.zeros(10), 0.0)
    assert len(events) == 1 and len(events[0].sites) == 7  # the two without a backup went silent with them
    assert (facts.outage_cause[:7] == CAUSE_UPSTREAM).all() and facts.upstream[7] == -1


def test_too_few_sites_make_no_event_and_groups_are_found_too():
    ids = [f"s{i}" for i in range(12)]
    facts = _facts([CONN_BACKUP_ONLY] * 4 + [CONN_PRIMARY] * 8)
    assert UpstreamDetector().apply(facts, ids, ["p"] * 12, [None] * 12, np.zeros(12), 0.0) == []
    facts = _facts([CONN_BACKUP_ONLY] * 5 + [CONN_PRIMARY] * 7)
    groups = ["agg-1"] * 6 + [None] * 6
    events = UpstreamDetector(min_share=0.5).apply(facts, ids, ["p"] * 12, groups, np.zeros(12), 0.0)
    assert [e.key for e in events] == ["group:agg-1"] and events[0].province == "p"
    assert facts.outage_cause[5] == CAUSE_NONE or facts.outage_cause[5] != CAUSE_UPSTREAM


# -- the fleet (unit) ----------------------------------------------------------------------------


def test_same_seed_same_fleet_and_every_incident_kind_present():
    sites = [(s.id, s.province) for s in generate_sites(300, seed=3)]
    a, b = build_fleet(sites, 7, 1.7e9), build_fleet(sites, 7, 1.7e9)
    assert [(s.id, s.kind, s.skew) for s in a.sites] == [(s.id, s.kind, s.skew) for s in b.sites]
    assert {s.kind for s in a.sites} == set(fleet_mod.KINDS)
    power = a.by_kind(fleet_mod.POWER)
    assert any(not s.reporting(a.start, a) for s in power), "some UPS batteries are flat by the start"
    assert any(s.reporting(a.start, a) for s in power), "some sites are still on battery"


def test_the_check_catches_a_false_completed_and_a_wrong_cause():
    truth = {"sites": {"a": {"kind": "backbone_cut", "states": ["not_completed"], "cause": "upstream"},
                       "b": {"kind": "power_cut", "states": ["not_completed"], "cause": "power"}}}
    verdicts = {"a": {"state": "completed", "last_report_at": 1.0, "outage_cause": None},
                "b": {"state": "not_completed", "last_report_at": 1.0, "outage_cause": "network",
                      "on_battery": False}}
    result = compare(truth, verdicts)
    assert not result.ok
    assert [m.site for m in result.false_completed] == ["a"] and [m.got for m in result.wrong_cause] == ["network"]


def test_a_site_whose_history_is_not_sent_yet_is_pending_unless_called_completed():
    """The truth file says whose day of history is in: before it is, "unknown" is all the collector can say."""
    truth = {"sites": {s: {"kind": "healthy", "states": ["completed"], "cause": "none", "history_sent": sent}
                       for s, sent in (("waiting", False), ("sent", True))}}
    truth["sites"]["bad"] = {"kind": "power_cut", "states": ["not_completed"], "cause": "power",
                             "history_sent": False}
    unknown = {"state": "unknown", "last_report_at": None, "candidate_since": None}
    result = compare(truth, {"waiting": unknown, "sent": unknown,
                             "bad": {"state": "completed", "last_report_at": 1.0, "outage_cause": None}})
    assert (result.pending, result.awaiting_history) == (1, 1)
    assert [m.site for m in result.wrong_state] == ["sent"], "a site whose history is in is judged"
    assert [m.site for m in result.false_completed] == ["bad"], "completed is never excused"
    assert any("still sending" in line for line in result.lines())


def test_the_truth_file_names_the_sites_whose_history_is_in(tmp_path):
    sites = [(s.id, s.province) for s in generate_sites(40, seed=3)]
    fleet = build_fleet(sites, 7, 1.7e9)
    first = fleet.sites[0].id
    doc = truth_document(fleet, fleet.start, {first})
    assert doc["sites"][first]["history_sent"] is True
    assert sum(e["history_sent"] for e in doc["sites"].values()) == 1
    assert all(e["history_sent"] for e in truth_document(fleet, fleet.start)["sites"].values())


# -- end to end -----------------------------------------------------------------------------------


def test_simulated_fleet_verdicts_match_ground_truth(tmp_path):
    """300 sites, every incident kind, through the real ingest API into a real collector."""
    criteria = tmp_path / "criteria.yaml"
    text = (ROOT / "config" / "criteria.yaml").read_text(encoding="utf-8")
    criteria.write_text(text.replace("stable_period: 1h", "stable_period: 1s"), encoding="utf-8")
    settings = {"aggregator": {"interval": "2s"}, "judge": {"criteria_file": str(criteria), "interval": "3s"}}
    truth = tmp_path / "truth.json"
    with CollectorPeer(sites=generate_sites(300, seed=5), settings=settings) as collector:
        sim = subprocess.Popen([CLI, "simulate", "run", "--config", str(collector.config_path), "--url",
                                collector.url, "--seed", "5", "--truth", str(truth), "--duration", "300"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            wait_until(lambda: truth.exists(), timeout=60, what="the simulator's ground truth",
                       abort=lambda: None if sim.poll() is None else f"simulator exited: {sim.stdout.read()}")
            expected = json.loads(truth.read_text(encoding="utf-8"))
            kinds = {s["kind"] for s in expected["sites"].values()}
            assert kinds == set(fleet_mod.KINDS)

            def settled():
                try:
                    result = compare(expected, fetch_verdicts(collector.url, token=collector.operator_token))
                except Exception:  # noqa: BLE001 - 503 before the first pass
                    return None
                return result if result.ok and result.pending == 0 else None

            try:
                wait_until(settled, timeout=150, interval=2.0, what="verdicts to match the ground truth")
            finally:
                result = compare(expected, fetch_verdicts(collector.url, token=collector.operator_token))
                print("\n".join(result.lines()))
            assert result.false_completed == []
            assert result.wrong_cause == [] and result.wrong_state == [] and result.missing == []
            assert result.checked == 300
            # the skewed agents were corrected, and flagged
            import httpx
            for site, e in expected["sites"].items():
                if e["kind"] in ("skewed_clock", "healthy") and (e["kind"] == "skewed_clock" or site < "b"):
                    status = httpx.get(f"{collector.url}/api/v1/sites/{site}", headers=collector.headers, timeout=10).json()
                    assert status["clock_suspect"] is (e["kind"] == "skewed_clock"), (site, status)
            verdicts = fetch_verdicts(collector.url, token=collector.operator_token)
            upstream = [v for v in verdicts.values() if v.get("upstream")]
            assert {v["upstream"]["key"] for v in upstream} == {f"province:{expected['backbone_province']}"}
            held = {site: v["maintenance"]["reason"] for site, v in verdicts.items() if v.get("maintenance")}
            assert set(held) == {s for s, e in expected["sites"].items() if e["kind"] == fleet_mod.MAINTENANCE}
            assert set(held.values()) == {fleet_mod.MAINTENANCE_REASON}
        finally:
            sim.send_signal(signal.SIGTERM)
            out, _ = sim.communicate(timeout=30)
        assert sim.returncode == 0, out
        assert "errors: none" in out.splitlines()[-1] or "stopped" in out


def test_simulate_cli_help():
    out = subprocess.run([CLI, "simulate", "run", "--help"], capture_output=True, text=True, check=True).stdout
    assert "--truth" in out and "--exclude" in out
    assert time.time() > 0


def test_upstream_settings_are_validated_with_file_and_line(tmp_path):
    from commune_collector.judge.criteria import load_criteria
    from commune_common.yamlconf import ConfigError
    text = (ROOT / "config" / "criteria.yaml").read_text(encoding="utf-8")
    assert load_criteria(ROOT / "config" / "criteria.yaml").upstream.min_share == pytest.approx(0.3)
    bad = tmp_path / "criteria.yaml"
    bad.write_text(text.replace("min_share: 30%", "min_share: 130%"), encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_criteria(bad)
    line = next(i for i, row in enumerate(bad.read_text().splitlines(), 1) if "min_share" in row)
    assert f"criteria.yaml:{line} upstream.min_share" in str(err.value.issues[0])
