"""A real judge over a nation where communes fail for different reasons, for the operators' pages.

Judged by the shipped ``config/criteria.yaml`` (stable period 1 h) over
synthetic hourly evidence, two passes an hour apart (``settle``):

- ``hn-ok-1``, ``hn-ok-2``, ``dn-ok-1``: every criterion met -> completed;
- ``hn-lossy``: 12.3% loss on the primary link -> not completed (``primary-loss``);
- ``hn-slow``: 400 ms round trips -> not completed (``primary-rtt``);
- ``hue-battery``: UPS on battery -> not completed (``mains-power``);
- ``dn-back``: on battery at the first pass, on mains again at the second: every
  criterion holds again, waiting out the stable period (``stabilising``);
- ``hue-new``: reports only for the last 5 hours: too little evidence for the
  24 h windows (``insufficient_evidence``);
- ``hue-silent``, ``dn-silent``: never reported.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

from commune_collector.evidence import BUCKET_SECONDS, bucket_of
from commune_collector.judge import Judge, MemoryEvidence, SiteRecord, load_criteria
from testsupport.synth import RTT_AVG, fast_bucket
from testsupport.web.judge_scenario import CHECKS, ICMP, ROOT, UPS

H = float(BUCKET_SECONDS)
SITES = [
    SiteRecord("hn-ok-1", "Phường Ba Đình", "ha-noi", "Ba Đình"),
    SiteRecord("hn-ok-2", "Phường Hoàn Kiếm", "ha-noi", "Hoàn Kiếm"),
    SiteRecord("hn-lossy", "Xã Sóc Sơn", "ha-noi", "Sóc Sơn"),
    SiteRecord("hn-slow", "Xã Ba Vì", "ha-noi", "Ba Vì"),
    SiteRecord("hue-battery", "Xã Phong Điền", "hue", "Phong Điền"),
    SiteRecord("hue-new", "Phường Thuận Hóa", "hue", "Thuận Hóa"),
    SiteRecord("hue-silent", "Xã A Lưới", "hue", "A Lưới"),
    SiteRecord("dn-ok-1", "Phường Hải Châu", "da-nang", "Hải Châu"),
    SiteRecord("dn-back", "Xã Hòa Vang", "da-nang", "Hòa Vang"),
    SiteRecord("dn-silent", "Xã Trường Sa", "da-nang", "Trường Sa"),
]
EXPECTED_STATUS = {"hn-ok-1": "completed", "hn-ok-2": "completed", "dn-ok-1": "completed",
                   "hn-lossy": "not_completed", "hn-slow": "not_completed", "hue-battery": "not_completed",
                   "dn-back": "stabilising", "hue-new": "insufficient_evidence",
                   "hue-silent": "never_reported", "dn-silent": "never_reported"}
FAILING_CRITERION = {"hn-lossy": "primary-loss", "hn-slow": "primary-rtt", "hue-battery": "mains-power"}
SILENT = {"hue-silent", "dn-silent"}


@dataclass
class Nation:
    start: float = field(default_factory=lambda: bucket_of(time.time()) - 2 * H + H / 2)
    evidence: MemoryEvidence = field(default_factory=lambda: MemoryEvidence(sites=list(SITES)))
    rng: random.Random = field(default_factory=lambda: random.Random(11))
    faults: dict[str, str] = field(default_factory=lambda: {"hn-lossy": "loss", "hn-slow": "slow",
                                                            "hue-battery": "battery", "dn-back": "battery"})

    def __post_init__(self) -> None:
        self.now = self.start
        self.judge = Judge(load_criteria(ROOT / "config" / "criteria.yaml"), self.evidence, clock=lambda: self.now)
        self._add_hours(self.start - 26 * H, self.start)

    def _values(self, site: str, check: str, probe: str) -> dict[str, tuple[float, float]]:
        fault = self.faults.get(site)
        if probe == "ups_nut":
            return {**UPS, "power_on_battery": (1.0, 0.0)} if fault == "battery" else UPS
        if fault == "loss" and check.startswith("link/fiber"):
            return {**ICMP, "icmp_loss_ratio": (0.123, 0.0)}
        if fault == "slow" and check.startswith("link/fiber"):
            return {**ICMP, RTT_AVG: (0.4, 0.01)}
        return ICMP

    def _reports(self, site: str, ts: float) -> bool:
        if site in SILENT:
            return False
        return site != "hue-new" or ts >= self.start - 4 * H

    def _add_hours(self, begin: float, end: float) -> None:
        ts = begin
        while ts < end:
            bucket = bucket_of(ts)
            until = min(end, bucket + H)
            rounds = max(1, int((until - ts) // 30))
            for site in SITES:
                if not self._reports(site.id, ts):
                    continue
                for check, probe, labels in CHECKS:
                    summary = fast_bucket(site.id, check, probe, labels, bucket, rounds, 0,
                                          self._values(site.id, check, probe), self.rng)
                    summary.first_ts, summary.last_ts = ts, ts + (rounds - 1) * 30
                    for stats in summary.values.values():
                        stats.last_ts = summary.last_ts
                    self.evidence.add(summary)
                self.evidence.reported[site.id] = summary.last_ts
            ts = until

    def settle(self) -> Nation:
        """First pass; dn-back back on mains; a pass a stable period later."""
        self.judge.run_pass(self.now)
        self.faults.pop("dn-back")
        self._add_hours(self.now, self.now + H + 1)
        self.now += H + 1
        self.judge.run_pass(self.now)
        return self
