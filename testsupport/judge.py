"""Shared pieces for the judge's tests: scripted sites with known ground truth, a judged world.

A ``World`` holds evidence in memory exactly as the aggregator would store it
(real ``CheckResult`` rounds folded by ``commune_collector.evidence``), a verdict
store, and a judge whose clock the test moves. ``advance(t)`` records every
site's rounds up to ``t`` (as if their reports had arrived) and judges.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from commune_collector.judge import (
    Judge,
    MemoryEvidence,
    MemoryVerdictStore,
    SiteRecord,
    load_criteria,
    parse_criteria,
)
from commune_collector.judge.criteria import DEFAULT_CRITERIA, CriteriaConfig
from commune_collector.judge.verdict import Snapshot
from testsupport.synth import CheckScript, SiteScript, const, icmp_check, ups_check

H = 3600.0
T0 = 1_750_000_000 // 3600 * 3600  # a whole hour, June 2025
PRIMARY = {"link": "fiber", "role": "primary", "target": "provincial-dc"}
BACKUP = {"link": "lte", "role": "backup", "target": "provincial-dc"}
UPS = {"ups": "ups", "source": "nut", "target": "ups"}
INTERVAL = 60.0
Pred = Callable[[float], bool]


def device(name: str, required: bool = True, role: str = "other") -> dict[str, str]:
    """The labels the agent gives a ping device (agent.devices.PingDevice)."""
    return {"device": name, "kind": "ping", "required": "true" if required else "false", "target": name,
            "role": role}


def never(ts: float) -> bool:
    return False


def always(ts: float) -> bool:
    return True


def between(start: float, end: float) -> Pred:
    return lambda ts: start <= ts < end


@dataclass
class ScriptedSite:
    """A commune whose every check can be scripted; defaults are a perfectly healthy site."""

    id: str
    province: str = "ha-noi"
    primary_down: Pred = never
    primary_loss: Callable[[float], float] = const(0.0)
    primary_rtt: Callable[[float], float] = const(0.02)
    backup_down: Pred = never
    on_battery: Pred = never
    runtime: Callable[[float], float] = const(2400.0)
    camera_down: Pred = never
    video_down: Pred = never
    video_jitter: Callable[[float], float] = const(0.002)
    silent: Pred = never
    has_ups: bool = True
    upstream: str | None = None  # the inventory's upstream group

    def script(self) -> SiteScript:
        def up(down: Pred) -> Pred:
            return lambda ts: not down(ts)

        checks: list[CheckScript] = [
            icmp_check("link/fiber/icmp/provincial-dc", PRIMARY, rtt=self.primary_rtt, loss=self.primary_loss,
                       up=up(self.primary_down), interval=INTERVAL),
            icmp_check("link/lte/icmp/provincial-dc", BACKUP, up=up(self.backup_down), interval=INTERVAL),
            icmp_check("device/camera/icmp", device("camera"), up=up(self.camera_down), interval=INTERVAL),
            icmp_check("device/video-conference/icmp", device("video-conference", role="video_conference"), up=up(self.video_down),
                       jitter=self.video_jitter, interval=INTERVAL),
        ]
        if self.has_ups:
            checks.append(ups_check("power/ups", UPS, on_battery=self.on_battery, runtime=self.runtime,
                                    interval=INTERVAL))
        return SiteScript(self.id, checks, silent=self.silent)


@dataclass
class World:
    """Sites, their evidence in memory, and a judge on a test-controlled clock."""

    sites: list[ScriptedSite]
    config: CriteriaConfig = field(default_factory=lambda: load_criteria(DEFAULT_CRITERIA))
    start: float = T0
    provinces: dict[str, str] | None = None
    now: float = 0.0
    verdicts: MemoryVerdictStore = field(default_factory=MemoryVerdictStore)
    inventory_only: list[tuple[str, str]] = field(default_factory=list)  # sites with no agent at all

    def __post_init__(self) -> None:
        records = [SiteRecord(s.id, f"Xã {s.id}", s.province, f"Xã {s.id}", s.upstream) for s in self.sites]
        records += [SiteRecord(i, f"Xã {i}", p, f"Xã {i}") for i, p in self.inventory_only]
        self.evidence = MemoryEvidence(sites=records)
        self.recorded_to = self.start
        self.now = self.start
        self.judge = self.new_judge()
        self.changes: list[Any] = []
        self.judge.add_listener(lambda changes, snapshot: self.changes.extend(changes))

    def new_judge(self) -> Judge:
        """A judge over this world's evidence and verdict store (a second one = a collector restart)."""
        return Judge(self.config, self.evidence, self.verdicts, clock=lambda: self.now, provinces=self.provinces)

    def record(self, start: float, end: float, sites: list[ScriptedSite] | None = None, arrived: float | None = None
               ) -> None:
        """Fold the sites' rounds in [start, end) into the evidence; their reports arrive at ``arrived``."""
        for site in sites or self.sites:
            script = site.script()
            summaries = script.summaries(start, end)
            self.evidence.add_all(summaries)
            if summaries:
                # reports arrive every 30 s while the agent can talk: the last one at the end
                last = max(s.last_ts for s in summaries) if site.silent(end - 1) else end
                seen = self.evidence.reported.get(site.id, 0.0)
                self.evidence.reported[site.id] = max(seen, arrived if arrived is not None else last)

    def advance(self, to: float, *, judge: bool = True) -> Snapshot | None:
        """Record every site's rounds up to ``to`` and judge at ``to``."""
        self.record(self.recorded_to, to)
        self.recorded_to = to
        self.now = to
        return self.judge.run_pass(to) if judge else None

    def judge_at(self, at: float) -> Snapshot:
        self.now = at
        return self.judge.run_pass(at)

    def verdict(self, site: str) -> dict:
        snapshot = self.judge.snapshot
        assert snapshot is not None
        verdict = snapshot.verdict(site)
        assert verdict is not None
        return verdict


def criterion(verdict: dict, cid: str) -> dict:
    return next(c for c in verdict["criteria"] if c["id"] == cid)


def failing(verdict: dict) -> set[str]:
    return {c["id"] for c in verdict["criteria"] if c["met"] is False}


def short_criteria_yaml(stable: str = "10m", extra: str = "") -> str:
    """Hour-scale windows, so a test can see a verdict fall and recover within a few simulated hours."""
    return f"""
stable_period: {stable}
min_coverage: 50%
items:
  network: {{title: {{en: Network, vi: Mạng}}}}
  power: {{title: {{en: Power, vi: Nguồn điện}}}}
criteria:
  - id: primary-availability
    item: network
    title: {{en: Primary up, vi: Đường truyền chính}}
    select: {{probe: icmp, role: primary}}
    expr: availability(1h) >= 99%
  - id: primary-loss
    item: network
    title: {{en: Loss, vi: Mất gói}}
    select: {{probe: icmp, role: primary}}
    expr: mean(icmp_loss_ratio, 1h) < 1%
    label: loss
  - id: mains-power
    item: power
    title: {{en: On mains, vi: Điện lưới}}
    select: {{ups: "*"}}
    expr: last(power_on_battery) == 0
    label: on battery
{extra}"""


def short_criteria(stable: str = "10m", extra: str = "") -> CriteriaConfig:
    return parse_criteria(short_criteria_yaml(stable, extra))
