"""A real judge over synthetic evidence with known ground truth, for the status page and alerts.

Six sites in two provinces, judged by the shipped ``config/criteria.yaml``
(stable period 1 h) over hourly evidence buckets:

- ``hn-ok-1``, ``hn-ok-2``, ``hue-ok-1``: every criterion met -> completed after the stable period;
- ``hn-lossy``: 12% loss on the primary link -> not_completed, ``primary-loss`` failing;
- ``hue-battery``: UPS on battery -> not_completed, ``mains-power`` failing;
- ``hue-silent``: never reported -> unknown.

``Scenario.settle()`` runs two passes an hour apart so the good sites earn
``completed``; ``break_site``/``heal_site`` then drive a regression and a
recovery for the alerting tests.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from commune_collector.evidence import BUCKET_SECONDS, bucket_of
from commune_collector.judge import Judge, MemoryEvidence, SiteRecord, load_criteria
from testsupport.synth import RTT_AVG, fast_bucket

ROOT = Path(__file__).resolve().parents[2]
H = float(BUCKET_SECONDS)
ICMP = {RTT_AVG: (0.025, 0.005), "icmp_jitter_seconds": (0.003, 0.001), "icmp_loss_ratio": (0.0, 0.0)}
UPS = {"power_on_battery": (0.0, 0.0), "power_battery_runtime_seconds": (2400.0, 0.0)}
SITES = [
    SiteRecord("hn-ok-1", "Phường Ba Đình", "ha-noi", "Ba Đình"),
    SiteRecord("hn-ok-2", "Phường Hoàn Kiếm", "ha-noi", "Hoàn Kiếm"),
    SiteRecord("hn-lossy", "Xã Sóc Sơn", "ha-noi", "Sóc Sơn"),
    SiteRecord("hue-ok-1", "Phường Thuận Hóa", "hue", "Thuận Hóa"),
    SiteRecord("hue-battery", "Xã Phong Điền", "hue", "Phong Điền"),
    SiteRecord("hue-silent", "Xã A Lưới", "hue", "A Lưới"),
]
CHECKS = [
    ("link/fiber/icmp/provincial-dc", "icmp", {"link": "fiber", "role": "primary", "target": "provincial-dc"}),
    ("link/lte/icmp/provincial-dc", "icmp", {"link": "lte", "role": "backup", "target": "provincial-dc"}),
    ("power/ups", "ups_nut", {"ups": "ups", "source": "nut", "target": "ups"}),
    ("device/video-conference/icmp", "icmp", {"device": "video-conference", "role": "video_conference", "required": "true",
                                              "target": "video-conference"}),
    ("device/camera/icmp", "icmp", {"device": "camera", "role": "camera", "required": "true", "target": "camera"}),
]


@dataclass
class Scenario:
    """The judge, its evidence and the (fake) clock it is judged at."""

    # judged at half past the hour, as a real pass would be: windows end inside a bucket
    start: float = field(default_factory=lambda: bucket_of(time.time()) - 2 * H + H / 2)
    evidence: MemoryEvidence = field(default_factory=lambda: MemoryEvidence(sites=list(SITES)))
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    faults: dict[str, str] = field(default_factory=lambda: {"hn-lossy": "loss", "hue-battery": "battery"})

    def __post_init__(self) -> None:
        self.now = self.start
        self.judge = Judge(load_criteria(ROOT / "config" / "criteria.yaml"), self.evidence,
                           clock=lambda: self.now)
        self._add_hours(self.start - 26 * H, self.start)

    def _values(self, site: str, check: str, probe: str) -> dict[str, tuple[float, float]]:
        fault = self.faults.get(site)
        if probe == "ups_nut":
            return {**UPS, "power_on_battery": (1.0, 0.0)} if fault == "battery" else UPS
        if fault == "loss" and check.startswith("link/fiber"):
            return {**ICMP, "icmp_loss_ratio": (0.123, 0.0)}
        return ICMP

    def _add_hours(self, begin: float, end: float) -> None:
        """Rounds every 30 s from ``begin`` to ``end``, folded into hourly buckets."""
        ts = begin
        while ts < end:
            bucket = bucket_of(ts)
            until = min(end, bucket + H)
            rounds = max(1, int((until - ts) // 30))
            for site in SITES:
                if site.id == "hue-silent":
                    continue
                for check, probe, labels in CHECKS:
                    summary = fast_bucket(site.id, check, probe, labels, bucket, rounds, 0,
                                          self._values(site.id, check, probe), self.rng)
                    summary.first_ts, summary.last_ts = ts, ts + (rounds - 1) * 30
                    for stats in summary.values.values():
                        stats.last_ts = summary.last_ts
                    self.evidence.add(summary)
            ts = until
        for site in SITES:
            if site.id != "hue-silent":
                self.evidence.reported[site.id] = end

    def advance(self, seconds: float = H) -> None:
        """Let time pass with every agent reporting, then judge."""
        self._add_hours(self.now, self.now + seconds)
        self.now += seconds
        self.judge.run_pass(self.now)

    def settle(self) -> Scenario:
        """Two passes a stable period apart: the good sites become completed."""
        self.judge.run_pass(self.now)
        self.advance(H + 1)
        return self

    def break_site(self, site: str) -> None:
        """Heavy loss on the site's primary link from now on (a regression once judged)."""
        self.faults[site] = "loss"

    def heal_site(self, site: str) -> None:
        self.faults.pop(site, None)
