"""Scenarios with known ground truth: what the judge must conclude, from recorded and from live evidence.

Part 1 records evidence the way the aggregator stores it (real rounds folded
into hourly summaries) for scripted sites, judges it with the shipped
``config/criteria.yaml`` and checks the verdict and the criterion it names.

Part 2 is live: a real ``commune-agent`` probing across an emulated link
between two network namespaces and pushing to a real ``commune-collector``;
loss on the link fails the loss criterion, healing it returns the site to
completed only after the stable period, and a real NUT UPS put on battery
fails the power criterion.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from commune_collector.judge.hysteresis import STATE_NAMES
from testsupport.collector import CollectorProcess, in_netns, program
from testsupport.judge import T0, H, World, always, between, criterion, failing, short_criteria
from testsupport.judge import ScriptedSite as S
from testsupport.linkemu import impaired_link, require_root_netns
from testsupport.peers._base import ManagedProcess, free_tcp_port, wait_until
from testsupport.peers.nut import NutPeer

DAY = 24 * H
START = T0 + 30 * 60  # half past: buckets are partly filled, as a pass finds them


def healthy_world(*sites: S, hours: float = 26, **kwargs: Any) -> World:
    """A world with ``hours`` of recorded evidence, judged once at its end."""
    world = World(list(sites), start=START, **kwargs)
    world.advance(START + hours * H)
    return world


# -- part 1: recorded evidence -------------------------------------------------------------


def test_a_healthy_site_completes_only_after_the_stable_period() -> None:
    world = healthy_world(S("ok"))
    first = world.verdict("ok")
    assert first["state"] == "unknown" and first["candidate_since"] == world.now
    assert failing(first) == set()
    world.advance(world.now + 0.5 * H)
    assert world.verdict("ok")["state"] == "unknown", "completed before the stable period (1h) ran"
    world.advance(world.now + 0.5 * H)
    verdict = world.verdict("ok")
    assert verdict["state"] == "completed" and verdict["since"] == world.now
    assert set(verdict["items"].values()) == {"completed"}
    assert verdict["connectivity"] == "primary" and verdict["outage_cause"] is None


@pytest.mark.parametrize("site, criterion_id, reason, value", [
    (S("lossy", primary_loss=lambda ts: 0.05), "primary-loss", "loss 5% over 24h, threshold < 1%", 0.05),
    (S("slow", primary_rtt=lambda ts: 0.4), "primary-rtt", "over 24h, threshold < 150ms", 0.4),
    (S("flaky", primary_down=lambda ts: int(ts // 60) % 10 == 0), "primary-availability",
     "availability 90% over 24h, threshold >= 99%", 0.9),  # rounds without reply also count as 100% loss
    (S("no-backup", backup_down=always), "backup-answered", "threshold < 24h", None),
    (S("battery", on_battery=always), "mains-power", "on battery yes, expected no", 1.0),
    (S("weak-ups", runtime=lambda ts: 300.0), "ups-runtime", "UPS runtime 5m over 1h, threshold >= 15m", 300.0),
    (S("camera", camera_down=lambda ts: int(ts // 60) % 10 < 2), "devices-up",
     "availability 80% over 24h, threshold >= 95%", 0.8),
    (S("video", video_down=lambda ts: int(ts // 60) % 25 == 0), "video-reachable",
     "over 24h, threshold >= 99%", 0.96),
    (S("jittery", video_jitter=lambda ts: 0.05), "video-jitter", "over 1h, threshold < 30ms", 0.05),
])
def test_each_criterion_fails_by_name_with_its_reason(site: S, criterion_id: str, reason: str,
                                                      value: float | None) -> None:
    """Ground truth per criterion: the site fails exactly that criterion, and says why in numbers."""
    world = healthy_world(site)
    verdict = world.verdict(site.id)
    assert verdict["state"] == "not_completed"
    assert failing(verdict) == {criterion_id} | ({"primary-loss"} if criterion_id == "primary-availability" else set())
    crit = criterion(verdict, criterion_id)
    assert reason in crit["reason"], crit["reason"]
    if value is not None:  # quantiles come from ~19%-wide histogram buckets: within 10%
        assert crit["value"] == pytest.approx(value, rel=0.1 if crit["expr"].startswith("p") else 0.01)
    assert crit["checks"] and crit["evidence_ts"] is not None and crit["coverage"] > 0.9
    assert verdict["items"][crit["item"]] == "not_completed"


def test_no_site_is_ever_completed_on_missing_evidence() -> None:
    """No agent at all, or no UPS check: unknown, however long the other criteria hold."""
    world = World([S("ok"), S("no-ups", has_ups=False)], start=START, inventory_only=[("no-agent", "hue")])
    for hour in range(1, 30):
        world.advance(START + hour * H)
        snapshot = world.judge.snapshot
        assert snapshot is not None
        for site in ("no-ups", "no-agent"):
            assert world.verdict(site)["state"] == "unknown", (site, hour)
    assert world.verdict("ok")["state"] == "completed"
    no_ups = world.verdict("no-ups")
    assert criterion(no_ups, "mains-power")["met"] is None
    assert criterion(no_ups, "mains-power")["reason"] == "no check matches {ups=*}"
    assert {c["met"] for c in world.verdict("no-agent")["criteria"]} == {None}
    hue = world.judge.snapshot.rollup.province("hue")
    assert (hue.total, hue.completed, hue.unknown) == (1, 0, 1), "a site without an agent counts in the total"


def test_one_lost_ping_does_not_flip_a_completed_site() -> None:
    one_round = START + 28 * H + 60
    site = S("steady", primary_down=between(one_round, one_round + 60))
    world = healthy_world(site, hours=28)
    world.advance(world.now + 1.5 * H)
    assert world.verdict("steady")["state"] == "completed"
    regressions_before = len(world.verdicts.rows)
    world.advance(one_round + 300)
    verdict = world.verdict("steady")
    assert verdict["state"] == "completed"
    avail = criterion(verdict, "primary-availability")
    assert avail["met"] is True and 0.99 < avail["value"] < 1.0, avail
    assert not [c for c in world.changes if c.kind == "regression"]
    assert len(world.verdicts.rows) == regressions_before


def test_a_completed_site_that_falls_back_is_a_regression_with_time_and_cause() -> None:
    outage = START + 30 * H
    world = healthy_world(S("fall", primary_down=between(outage, outage + 2 * H)), hours=28)
    world.advance(world.now + 1.5 * H)
    assert world.verdict("fall")["state"] == "completed"
    world.advance(outage + H)
    verdict = world.verdict("fall")
    assert verdict["state"] == "not_completed"
    [regression] = verdict["regressions"]
    assert regression["from"] == "completed" and regression["to"] == "not_completed"
    assert regression["at"] == world.now and "primary-availability" in regression["cause"]
    assert "availability" in regression["detail"]
    [event] = [c for c in world.changes if c.kind == "regression"]
    assert (event.site, event.province, event.at) == ("fall", "ha-noi", world.now)
    assert verdict["connectivity"] == "backup_only"  # primary failing, backup answering: its own state
    assert verdict["outage_cause"] is None


def test_heal_returns_to_completed_only_after_the_stable_period() -> None:
    lossy_until = START + 3 * H
    site = S("heal", primary_loss=lambda ts: 0.2 if ts < lossy_until else 0.0)
    world = World([site], config=short_criteria(stable="30m"), start=START)
    world.advance(START + 2 * H)
    assert world.verdict("heal")["state"] == "not_completed"
    assert failing(world.verdict("heal")) == {"primary-loss"}
    seen = []
    t = lossy_until
    while t <= lossy_until + 3.5 * H:
        world.advance(t)
        verdict = world.verdict("heal")
        seen.append((t, verdict["state"], criterion(verdict, "primary-loss")["met"]))
        t += 600
    first_met = next(t for t, _, met in seen if met)
    first_completed = next(t for t, state, _ in seen if state == "completed")
    assert first_completed - first_met >= 30 * 60, seen
    assert all(state == "not_completed" for t, state, _ in seen if t < first_completed)
    assert [c.kind for c in world.changes if c.site == "heal"][-1] == "recovered"


def test_silence_is_unknown_not_down_and_backfill_is_judged_again() -> None:
    """An agent cut off for 20 h: unknown (no regression); its spooled rounds arrive and count again."""
    gap = (START + 28 * H, START + 48 * H)
    site = S("cut")
    world = healthy_world(site, hours=28)
    world.advance(world.now + 1.5 * H)
    assert world.verdict("cut")["state"] == "completed"
    silent = S("cut", silent=between(*gap))
    world.sites = [silent]
    world.advance(gap[1])
    verdict = world.verdict("cut")
    assert verdict["state"] == "unknown", "silence counted as down"
    avail = criterion(verdict, "primary-availability")
    assert avail["met"] is None and avail["coverage"] < 0.5 and "evidence covers" in avail["reason"]
    assert verdict["connectivity"] == "unknown" and verdict["outage_cause"] == "network"
    assert not [c for c in world.changes if c.kind == "regression"]
    assert [c.kind for c in world.changes if c.kind == "site_silent"] == ["site_silent"]
    # the agent's spool arrives: the gap's rounds, with their original timestamps
    world.record(*gap, sites=[site], arrived=gap[1] + 60)
    snapshot = world.judge_at(gap[1] + 60)
    verdict = snapshot.verdict("cut")
    avail = criterion(verdict, "primary-availability")
    assert avail["met"] is True and avail["coverage"] > 0.95
    assert verdict["state"] == "completed", "the stable clock kept running through the silence"
    assert "site_reporting" in [c.kind for c in world.changes]


def test_backfill_can_also_reveal_a_failure() -> None:
    gap = (START + 28 * H, START + 40 * H)
    world = healthy_world(S("hidden"), hours=28)
    world.advance(world.now + 1.5 * H)
    world.sites = [S("hidden", silent=between(*gap))]
    world.advance(gap[1])
    assert world.verdict("hidden")["state"] == "unknown"
    truth = S("hidden", primary_loss=lambda ts: 0.1)  # what really happened during the gap
    world.record(*gap, sites=[truth], arrived=gap[1] + 60)
    verdict = world.judge_at(gap[1] + 60).verdict("hidden")
    assert verdict["state"] == "not_completed" and "primary-loss" in failing(verdict)
    assert verdict["regressions"] and verdict["regressions"][-1]["from"] == "completed"


def test_power_outage_or_network_outage() -> None:
    """Both sites go silent; the one whose UPS was on battery just before is a power outage."""
    cut = START + 27 * H
    power = S("power", on_battery=between(cut - 600, cut + 99 * H), silent=between(cut, cut + 99 * H))
    network = S("network", silent=between(cut, cut + 99 * H))
    world = healthy_world(power, network, hours=27.5)
    by_site = {s: world.verdict(s) for s in ("power", "network")}
    assert by_site["power"]["outage_cause"] == "power"
    assert by_site["network"]["outage_cause"] == "network"
    assert {c.kind for c in world.changes if c.site == "power"} >= {"on_battery", "site_silent"}


def test_backup_link_only_is_its_own_state() -> None:
    down = START + 26 * H
    world = healthy_world(S("lte", primary_down=between(down, down + 9 * H)), S("both"), hours=26.2)
    assert world.verdict("lte")["connectivity"] == "backup_only"
    assert world.verdict("both")["connectivity"] == "primary"


def test_a_required_device_down_is_an_event_and_back_up_another() -> None:
    down = (START + 26 * H, START + 26.5 * H)
    world = healthy_world(S("dev", camera_down=between(*down)), hours=26.2)
    assert [(c.kind, c.check) for c in world.changes if c.kind.startswith("device")] == [
        ("device_down", "device/camera/icmp")]
    world.advance(START + 27 * H)
    assert [c.kind for c in world.changes if c.kind.startswith("device")] == ["device_down", "device_up"]


def test_states_are_the_contract_names() -> None:
    assert STATE_NAMES == ("unknown", "not_completed", "completed")


# -- part 2: live, real agent -> real collector ------------------------------------------------

LIVE_SITE = "ha-noi-live"
LINK_CRITERIA = """
stable_period: 5s
min_coverage: 0%
expected_interval: 1s
items:
  network: {title: {en: Network, vi: Mạng}}
  reporting: {title: {en: Reporting, vi: Báo cáo}}
criteria:
  - id: primary-loss
    item: network
    title: {en: Packet loss on the primary link under 10%, vi: Mất gói dưới 10%}
    select: {probe: icmp, role: primary}
    expr: last(icmp_loss_ratio, 1h) < 10%
    label: loss
  - id: agent-reporting
    item: reporting
    title: {en: Agent reporting, vi: Thiết bị báo cáo}
    required: false
    expr: report_age() < 1m
"""
POWER_CRITERIA = """
stable_period: 2s
min_coverage: 0%
expected_interval: 1s
items:
  power: {title: {en: Power, vi: Nguồn điện}}
criteria:
  - id: mains-power
    item: power
    title: {en: On mains power, vi: Điện lưới}
    select: {ups: "*"}
    expr: last(power_on_battery, 1h) == 0
    label: on battery
"""


class LiveCollector(CollectorProcess):
    """``commune-collector serve`` (optionally inside a namespace) judging every second."""

    def __init__(self, root: Path, criteria: str, host: str = "127.0.0.1", netns: str | None = None):
        (root / "criteria.yaml").write_text(criteria, encoding="utf-8")
        super().__init__(root, "aggregator: {interval: 1s}\n"
                         f"judge: {{criteria_file: {root / 'criteria.yaml'}, interval: 1s}}\n", host, netns)

    def verdict(self, site: str) -> dict | None:
        try:
            return json.loads(self.get(f"/api/v1/verdicts/{site}"))
        except (OSError, ValueError):
            return None  # 503 before the first pass

    def wait_verdict(self, site: str, holds: Callable[[dict], bool], what: str, timeout: float = 90.0) -> dict:
        def check() -> dict | None:
            verdict = self.verdict(site)
            return verdict if verdict is not None and holds(verdict) else None

        return wait_until(check, timeout=timeout, interval=0.5, what=what, abort=self.died)



class LiveAgent:
    """``commune-agent run`` (optionally inside a namespace) probing every second and pushing."""

    def __init__(self, root: Path, body: str, collector_url: str, token: Path, netns: str | None = None):
        self.root, self.netns = root, netns
        port = free_tcp_port()
        self.config = root / "agent.yaml"
        self.config.write_text(f"""
site: {{id: {LIVE_SITE}, province: ha-noi, commune: Phường Ba Đình}}
agent: {{listen: "127.0.0.1:{port}", state_dir: {root / 'agent-state'}, jitter: 0}}
defaults: {{interval: 1s, timeout: 1s}}
{body}
host: {{enabled: false}}
collector:
  url: {collector_url}
  token_file: {token}
  push_interval: 1s
  timeout: 5s
  backoff_max: 2s
""", encoding="utf-8")
        self.process: ManagedProcess | None = None

    def start(self) -> None:
        self.process = ManagedProcess(in_netns(self.netns, [program("commune-agent"), "run", "--config",
                                                          str(self.config)]), self.root / "agent.log")
        self.process.start()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


@pytest.mark.slow
def test_live_loss_on_the_link_then_healing_after_the_stable_period(tmp_path: Path) -> None:
    """A real agent pings the 'provincial data center' across an emulated link and pushes to a real collector."""
    require_root_netns()
    with impaired_link(delay_ms=2.0, seed=11, ipv6=False) as link:
        collector = LiveCollector(tmp_path, LINK_CRITERIA, host=link.far_ip, netns=link.ns_far)
        token = collector.enrol(LIVE_SITE, tmp_path / f"{LIVE_SITE}.token")
        collector.start()
        agent = LiveAgent(tmp_path, f"""links:
  - name: fiber
    role: primary
    targets:
      - {{probe: icmp, name: provincial-dc, host: {link.far_ip}, count: 10, packet_interval: 50ms,
         echo_timeout: 400ms}}""", collector.url, token, netns=link.ns_near)
        agent.start()
        try:
            healthy = collector.wait_verdict(LIVE_SITE, lambda v: v["state"] == "completed",
                                             "the healthy site to be completed")
            assert criterion(healthy, "primary-loss")["value"] == 0.0
            link.set(loss=0.5, direction="near_to_far")  # half the echo requests lost on the way out
            lossy = collector.wait_verdict(LIVE_SITE, lambda v: v["state"] == "not_completed",
                                           "the lossy link to fail the site")
            assert failing(lossy) == {"primary-loss"}
            loss = criterion(lossy, "primary-loss")
            assert loss["value"] >= 0.1 and loss["reason"].startswith("loss ") and "threshold < 10%" in loss["reason"]
            assert lossy["regressions"][-1]["cause"] == ["primary-loss"]
            link.set(loss=0.0)
            seen: list[dict] = []
            healed = collector.wait_verdict(LIVE_SITE, lambda v: seen.append(v) or v["state"] == "completed",
                                            "the healed site to be completed again")
            waiting = [v for v in seen if v["state"] == "not_completed" and criterion(v, "primary-loss")["met"]]
            assert waiting, "criteria met again but not yet stable must still be not_completed"
            assert healed["since"] - healed["candidate_since"] >= healed["stable_period_s"] == 5.0
        finally:
            agent.stop()
            collector.stop()


@pytest.mark.slow
def test_live_ups_on_battery_fails_the_power_criterion(tmp_path: Path, nut_ups: NutPeer) -> None:
    """A real NUT UPS (dummy-ups behind upsd) put on battery while a real agent reports."""
    collector = LiveCollector(tmp_path, POWER_CRITERIA)
    token = collector.enrol(LIVE_SITE, tmp_path / f"{LIVE_SITE}.token")
    collector.start()
    agent = LiveAgent(tmp_path, f"""power:
  - {{name: main-ups, source: nut, host: {nut_ups.host}, port: {nut_ups.port}, ups: {nut_ups.ups_name}}}""",
                      collector.url, token)
    agent.start()
    try:
        on_mains = collector.wait_verdict(LIVE_SITE, lambda v: v["state"] == "completed", "the site on mains")
        assert on_mains["on_battery"] is False
        nut_ups.set_status("OB DISCHRG")
        battery = collector.wait_verdict(LIVE_SITE, lambda v: v["state"] == "not_completed",
                                         "the UPS on battery to fail the site")
        assert failing(battery) == {"mains-power"}
        assert criterion(battery, "mains-power")["reason"] == "on battery yes, expected no"
        assert battery["on_battery"] is True and battery["outage_cause"] is None  # still reporting: no outage
    finally:
        nut_ups.reset()
        agent.stop()
        collector.stop()
