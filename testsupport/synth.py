"""Synthetic evidence with known ground truth, for scenario tests, the demo and the benchmark.

Two speeds: ``SiteScript`` produces real ``CheckResult`` rounds and folds them
with the collector's own ``fold_results`` (what ingest does, so a scenario
exercises the real evidence path); ``fast_bucket`` writes one hourly
``CheckSummary`` directly, for the benchmark's millions of buckets.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from commune_collector.evidence import (
    BUCKET_SECONDS,
    CheckSummary,
    ValueStats,
    fold_results,
    histogrammed,
    sketch_index,
)
from commune_common.wire import CheckResult, value_key

RTT_AVG = value_key("icmp_rtt_seconds", {"stat": "avg"})
Fn = Callable[[float], float]


def const(value: float) -> Fn:
    return lambda ts: value


def _fn(value: Fn | float) -> Fn:
    return value if callable(value) else const(float(value))


@dataclass
class CheckScript:
    """One check of a scripted site: how each round at time ``ts`` turns out."""

    check: str
    probe: str
    labels: dict[str, str]
    values: Callable[[float], dict[str, float]]
    ok: Callable[[float], bool] = lambda ts: True
    interval: float = 30.0
    reason: str = "no reply"


def icmp_check(check: str, labels: dict[str, str], *, rtt: Fn | float = 0.02, loss: Fn | float = 0.0,
               jitter: Fn | float = 0.002, up: Callable[[float], bool] = lambda ts: True,
               interval: float = 30.0) -> CheckScript:
    """An ICMP target: rounds fail (no reply) when ``up(ts)`` is false, else report rtt/loss/jitter."""
    rtt, loss, jitter = _fn(rtt), _fn(loss), _fn(jitter)

    def values(ts: float) -> dict[str, float]:
        if not up(ts):
            return {"icmp_loss_ratio": 1.0}
        return {RTT_AVG: rtt(ts), "icmp_loss_ratio": loss(ts), "icmp_jitter_seconds": jitter(ts)}

    return CheckScript(check, "icmp", labels, values, up, interval)


def ups_check(check: str, labels: dict[str, str], *, on_battery: Callable[[float], bool] = lambda ts: False,
              runtime: Fn | float = 3600.0, interval: float = 30.0) -> CheckScript:
    runtime = _fn(runtime)
    def values(ts: float) -> dict[str, float]:
        return {"power_on_battery": 1.0 if on_battery(ts) else 0.0, "power_battery_runtime_seconds": runtime(ts),
                "power_battery_charge_ratio": 1.0}

    return CheckScript(check, "ups_nut", labels, values, interval=interval)


@dataclass
class SiteScript:
    """A site's checks; ``rounds`` runs them over a time range, skipping when the agent is silent."""

    site: str
    checks: list[CheckScript] = field(default_factory=list)
    silent: Callable[[float], bool] = lambda ts: False

    def rounds(self, start: float, end: float) -> list[CheckResult]:
        out = []
        for c in self.checks:
            ts = start
            while ts < end:
                if not self.silent(ts):
                    ok = c.ok(ts)
                    out.append(CheckResult(check=c.check, probe=c.probe, ts=ts, ok=ok, duration_s=0.01,
                                           reason="" if ok else c.reason, labels=dict(c.labels),
                                           values=c.values(ts)))
                ts += c.interval
        return out

    def summaries(self, start: float, end: float, bucket_seconds: int = BUCKET_SECONDS) -> list[CheckSummary]:
        return fold_summaries(self.site, self.rounds(start, end), bucket_seconds)


def fold_summaries(site: str, results: Iterable[CheckResult], bucket_seconds: int = BUCKET_SECONDS
                   ) -> list[CheckSummary]:
    """What the aggregator would store for these rounds."""
    return list(fold_results(site, ((r, r.ts) for r in results), bucket_seconds).values())


def fast_bucket(site: str, check: str, probe: str, labels: dict[str, str], bucket_start: float, rounds: int,
                failed: int, values: dict[str, tuple[float, float]], rng: random.Random,
                interval: float = 30.0) -> CheckSummary:
    """One bucket straight from parameters: ``values`` maps key -> (mean, spread).

    Histograms are filled with a handful of points around the mean, enough for
    realistic quantile work without simulating every round.
    """
    s = CheckSummary(site, check, probe, bucket_start, dict(labels), rounds - failed, failed,
                     bucket_start, bucket_start + (rounds - 1) * interval, "timeout" if failed and rng.random() < 0.5 else "")
    for key, (mean, spread) in values.items():
        stats = ValueStats(count=rounds, sum=mean * rounds, min=max(mean - spread, 0.0), max=mean + spread,
                           last=mean, last_ts=s.last_ts)
        if histogrammed(key):
            hist: dict[int, int] = {}
            for _ in range(8):
                v = max(mean + rng.uniform(-spread, spread), 1e-6)
                i = sketch_index(v)
                hist[i] = hist.get(i, 0) + rounds // 8
            stats.hist = hist
        s.values[key] = stats
    return s

