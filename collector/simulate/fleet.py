"""What every simulated site is, what happens to it, and what the collector must conclude.

A site has the kit a commune center is deployed with: a fiber primary link
to the provincial data center, a lossy 4G backup, the video-conference
terminal on the LAN, a router and a switch (required devices) and a UPS. Each
site's link quality is drawn once from its own seeded generator, so the same
seed and inventory always give the same fleet.

Incidents are scripted relative to the simulator's start and many began in
the past, so the backfilled day of history already carries them and the first
verdicts show them: a province's backbone cut two hours ago (an upstream
outage), an area's power cut fifty minutes ago with UPS batteries running down
(some already flat, their agents dark), flapping primary links, communes whose
agent was never installed, agents installed twenty minutes ago (too little
evidence yet: waiting), agents with skewed clocks that the collector must
correct, and a few communes in declared maintenance (an office renovation
that began half an hour ago, its primary link unplugged: held, not failed).
``Expectation`` is the ground truth for a site at a given time.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from commune_common.wire import CheckResult, value_key

HEALTHY, BACKBONE, POWER, FLAPPING, NEVER, NEW, SKEWED, MAINTENANCE = (
    "healthy", "backbone_cut", "power_cut", "flapping", "never_installed", "new_install", "skewed_clock",
    "maintenance")
KINDS = (HEALTHY, BACKBONE, POWER, FLAPPING, NEVER, NEW, SKEWED, MAINTENANCE)
# causes as the check reads them from a verdict (check.cause_of)
CAUSE_NONE, CAUSE_POWER, CAUSE_NETWORK, CAUSE_UPSTREAM, CAUSE_NEVER, CAUSE_MAINTENANCE = (
    "none", "power", "network", "upstream", "never_reported", "maintenance")

BACKBONE_CUT_AGO = 2 * 3600.0
POWER_CUT_AGO = 50 * 60.0
POWER_WINDOW = 5 * 60.0  # last(power_on_battery, 5m) in the shipped criteria
NEW_INSTALL_AGO = 20 * 60.0
MAINTENANCE_AGO = 30 * 60.0  # declared as starting then: within the hour a window may be back-dated
MAINTENANCE_FOR = 4 * 3600.0
MAINTENANCE_REASON = "Cải tạo trụ sở, tạm ngắt đường truyền (office renovation, link unplugged)"
FLAP_DOWN_SHARE = 0.3
SKEWS = (420.0, -300.0, 180.0, -600.0, 900.0, -240.0)
ECHOES = 5
RTT_AVG = value_key("icmp_rtt_seconds", {"stat": "avg"})
RTT_MIN = value_key("icmp_rtt_seconds", {"stat": "min"})
RTT_MAX = value_key("icmp_rtt_seconds", {"stat": "max"})


@dataclass(frozen=True)
class Path:
    """An ICMP path's character: base RTT, jitter and per-echo loss probability."""

    rtt: float
    jitter: float
    loss: float


@dataclass(frozen=True)
class CheckSpec:
    check: str
    probe: str
    labels: dict[str, str]
    interval: float
    phase: float  # seconds into each interval when the round runs


@dataclass
class SimSite:
    id: str
    province: str
    kind: str = HEALTHY
    primary: Path = Path(0.02, 0.002, 0.001)
    backup: Path = Path(0.09, 0.02, 0.06)
    video: Path = Path(0.002, 0.0005, 0.0)
    runtime_full: float = 3600.0  # UPS runtime on a full battery at this site's load
    runtime_at_cut: float = 3600.0  # power-cut sites: what the battery had when the mains went
    skew: float = 0.0  # agent clock minus true time
    installed_at: float = -math.inf
    checks: list[CheckSpec] = field(default_factory=list)

    # -- the site's state at a true time t ------------------------------------------------

    def primary_up(self, t: float, fleet: Fleet, rng: random.Random) -> bool:
        if self.kind == MAINTENANCE and t >= fleet.maintenance_from:
            return False
        if self.kind == BACKBONE and t >= fleet.backbone_cut_at:
            return False
        return not (self.kind == FLAPPING and rng.random() < FLAP_DOWN_SHARE)

    def on_battery(self, t: float, fleet: Fleet) -> bool:
        return self.kind == POWER and t >= fleet.power_cut_at

    def runtime(self, t: float, fleet: Fleet) -> float:
        if not self.on_battery(t, fleet):
            return self.runtime_full
        return max(0.0, self.runtime_at_cut - (t - fleet.power_cut_at))

    def dark_since(self, fleet: Fleet) -> float:
        """When the agent stopped (battery flat), or +inf."""
        return fleet.power_cut_at + self.runtime_at_cut if self.kind == POWER else math.inf

    def reporting(self, t: float, fleet: Fleet) -> bool:
        """Whether the agent runs at true time t (installed, powered)."""
        return self.kind != NEVER and t >= self.installed_at and t < self.dark_since(fleet)


@dataclass(frozen=True)
class Expectation:
    """The ground truth for one site: acceptable verdict states and the cause the collector must give."""

    kind: str
    states: tuple[str, ...]
    cause: str
    note: str


@dataclass
class Fleet:
    """All simulated sites with their incidents, anchored at ``start`` (true time)."""

    start: float
    seed: int
    sites: list[SimSite]
    backbone_province: str | None
    power_province: str | None

    @property
    def backbone_cut_at(self) -> float:
        return self.start - BACKBONE_CUT_AGO

    @property
    def power_cut_at(self) -> float:
        return self.start - POWER_CUT_AGO

    @property
    def maintenance_from(self) -> float:
        return self.start - MAINTENANCE_AGO

    @property
    def maintenance_to(self) -> float:
        return self.maintenance_from + MAINTENANCE_FOR

    def by_kind(self, kind: str) -> list[SimSite]:
        return [s for s in self.sites if s.kind == kind]

    # -- rounds ----------------------------------------------------------------------------

    def rounds(self, site: SimSite, check: CheckSpec, t: float, rng: random.Random) -> CheckResult:
        """One round of ``check`` at true time ``t``, stamped with the agent's (possibly skewed) clock."""
        probe, values, ok, reason = check.probe, {}, True, ""
        if probe == "icmp":
            role = check.labels["role"]
            if role == "primary":
                up, path = site.primary_up(t, self, rng), site.primary
            elif role == "backup":
                up, path = True, site.backup
            else:
                up, path = True, site.video
            values, ok, reason = _icmp(path, up, rng)
        elif probe == "snmp_system":
            values = {"snmp_uptime_seconds": t - site.installed_at if site.installed_at > 0 else 86400.0 * 30,
                      "snmp_response_seconds": 0.004 * rng.uniform(0.7, 1.5)}
        else:
            battery = site.on_battery(t, self)
            runtime = site.runtime(t, self)
            values = {"power_on_battery": 1.0 if battery else 0.0,
                      "power_battery_runtime_seconds": round(runtime),
                      "power_battery_charge_ratio": round(min(1.0, runtime / site.runtime_full), 3),
                      "power_input_voltage_volts": 0.0 if battery else round(rng.gauss(225.0, 3.0), 1),
                      "power_load_ratio": round(rng.uniform(0.25, 0.35), 3)}
        return CheckResult(check=check.check, probe=probe, ts=round(t + site.skew, 3), ok=ok,
                           duration_s=round(rng.uniform(0.005, 0.05), 4), reason=reason, labels=check.labels,
                           values=values)

    # -- ground truth ----------------------------------------------------------------------

    def expectation(self, site: SimSite, t: float) -> Expectation:
        kind = site.kind
        if kind == BACKBONE:
            return Expectation(kind, ("not_completed",), CAUSE_UPSTREAM,
                               "the province's backbone is cut: primary link down, on the 4G backup")
        if kind == POWER:
            dark = site.dark_since(self)
            if t < dark:
                return Expectation(kind, ("not_completed",), CAUSE_POWER, "mains cut, on UPS battery")
            # once the last on-battery reading is older than the power criterion's window (5 min), unknown is
            # honest; a site dark before the start was backfilled with two rounds an hour, so its last
            # reading may be that old already
            stale = t - dark >= POWER_WINDOW or dark < self.start
            states = ("not_completed", "unknown") if stale else ("not_completed",)
            return Expectation(kind, states, CAUSE_POWER, "mains cut, UPS battery flat: the agent is dark")
        if kind == FLAPPING:
            return Expectation(kind, ("not_completed",), CAUSE_NETWORK, "primary link flapping")
        if kind == NEVER:
            return Expectation(kind, ("unknown",), CAUSE_NEVER, "agent never installed")
        if kind == NEW:
            return Expectation(kind, ("unknown",), CAUSE_NONE, "installed recently: too little evidence yet")
        if kind == MAINTENANCE and t < self.maintenance_to:
            # held as it was before the window (completed, or unknown when the judge first sees it inside)
            return Expectation(kind, ("completed", "unknown"), CAUSE_MAINTENANCE,
                               "declared maintenance: link unplugged, verdict held, alerts silenced")
        note = f"agent clock {site.skew:+.0f}s off" if kind == SKEWED else "healthy"
        return Expectation(kind, ("completed",), CAUSE_NONE, note)


def _icmp(path: Path, up: bool, rng: random.Random) -> tuple[dict[str, float], bool, str]:
    lost = ECHOES if not up else sum(rng.random() < path.loss for _ in range(ECHOES))
    if lost == ECHOES:
        return {"icmp_loss_ratio": 1.0}, False, f"no reply to {ECHOES} echo requests"
    rtts = [max(0.0002, rng.gauss(path.rtt, path.jitter)) for _ in range(ECHOES - lost)]
    jitter = (sum(abs(a - b) for a, b in zip(rtts[1:], rtts, strict=False)) / (len(rtts) - 1)
              if len(rtts) > 1 else 0.0)
    return ({RTT_AVG: round(sum(rtts) / len(rtts), 6), RTT_MIN: round(min(rtts), 6),
             RTT_MAX: round(max(rtts), 6), "icmp_loss_ratio": lost / ECHOES, "icmp_jitter_seconds": round(jitter, 6)},
            True, "")


# -- building a fleet ----------------------------------------------------------------------


def _checks(rng: random.Random) -> list[CheckSpec]:
    def spec(check: str, probe: str, labels: dict[str, str], interval: float) -> CheckSpec:
        return CheckSpec(check, probe, labels, interval, rng.uniform(0, interval))

    return [
        spec("link/fiber/icmp/provincial-dc", "icmp", {"link": "fiber", "role": "primary",
                                                       "target": "provincial-dc"}, 30.0),
        spec("link/lte/icmp/provincial-dc", "icmp", {"link": "lte", "role": "backup", "target": "provincial-dc"},
             60.0),
        spec("link/lan/icmp/vc-terminal", "icmp", {"link": "lan", "role": "video_conference",
                                                   "target": "vc-terminal"}, 30.0),
        spec("device/router/snmp_system", "snmp_system", {"device": "router", "kind": "router",
                                                          "required": "true"}, 60.0),
        spec("device/switch/snmp_system", "snmp_system", {"device": "switch", "kind": "switch",
                                                          "required": "true"}, 60.0),
        spec("power/ups", "ups_nut", {"ups": "ups", "source": "nut", "target": "ups"}, 30.0),
    ]


def _site(site_id: str, province: str, seed: int) -> SimSite:
    rng = random.Random(f"{seed}:{site_id}")
    rural = rng.random() < 0.4
    primary = Path(rng.uniform(0.012, 0.045) if rural else rng.uniform(0.004, 0.02),
                   rng.uniform(0.0005, 0.004), rng.choice((0.0, 0.0, 0.0, 0.0001)))
    backup = Path(rng.uniform(0.05, 0.16), rng.uniform(0.008, 0.04), rng.uniform(0.02, 0.12))
    video = Path(rng.uniform(0.0008, 0.003), rng.uniform(0.0001, 0.0012), 0.0)
    return SimSite(site_id, province, HEALTHY, primary, backup, video, runtime_full=rng.uniform(1800, 5400),
                   checks=_checks(rng))


def build_fleet(sites: Sequence[tuple[str, str]], seed: int, start: float) -> Fleet:
    """``sites`` is (id, province) pairs; incidents are drawn from ``seed``, scaled to the fleet's size."""
    fleet_sites = [_site(site_id, province, seed) for site_id, province in sorted(sites)]
    rng = random.Random(seed)
    by_province: dict[str, list[SimSite]] = {}
    for s in fleet_sites:
        by_province.setdefault(s.province, []).append(s)
    n = len(fleet_sites)
    big = sorted((p for p, members in by_province.items() if len(members) >= 6),
                 key=lambda p: (-len(by_province[p]), p))
    backbone = rng.choice(big[:4]) if big else None
    if backbone:
        for s in by_province[backbone]:
            s.kind = BACKBONE
    others = [p for p in big if p != backbone]
    power = rng.choice(others[:6]) if others else None
    if power:
        area = rng.sample(by_province[power], min(12, len(by_province[power]) // 2))
        for k, s in enumerate(area):
            s.kind = POWER
            # a third of the batteries were small and are flat by now; the rest hold for hours
            s.runtime_at_cut = rng.uniform(25 * 60, 40 * 60) if k < len(area) // 3 else rng.uniform(3, 5) * 3600
    free = [s for s in fleet_sites if s.kind == HEALTHY]
    rng.shuffle(free)
    counts = {FLAPPING: max(3, n // 500), NEVER: max(3, n // 300), NEW: max(3, n // 300),
              SKEWED: max(3, min(len(SKEWS), n // 300)), MAINTENANCE: max(3, n // 1000)}
    for kind, count in counts.items():
        for k in range(count):
            if not free:
                break
            s = free.pop()
            s.kind = kind
            if kind == NEW:
                s.installed_at = start - NEW_INSTALL_AGO + k * 7.0
            elif kind == SKEWED:
                s.skew = SKEWS[k % len(SKEWS)]
    return Fleet(start, seed, fleet_sites, backbone, power)
