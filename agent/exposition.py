"""Prometheus /metrics for the agent: a collector computed at scrape time.

Nothing is pushed into global metric objects: the latest result of every check
is kept in ``LatestResults`` and turned into families when Prometheus scrapes,
as client_python's custom collectors do. The registry is passed in.
"""

from __future__ import annotations

import platform
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from commune_agent import __version__
from commune_agent.checks import Check
from commune_agent.probes.base import MetricDoc, ProbeResult
from commune_agent.registry import PROBES
from commune_agent.scheduler import SchedulerStats

PREFIX = "commune_"
_DOCS: dict[str, MetricDoc] = {m.name: m for spec in PROBES.values() for m in spec.metrics}
BASE_LABELS = ("site", "check", "probe")  # plus the check's own labels (link, role, target, ...)

# the families this module emits besides the probes' own; docs/metrics.md is generated from these
METRIC_DOCS: tuple[MetricDoc, ...] = (
    MetricDoc("probe_success", "1 when the check's last round succeeded.", BASE_LABELS),
    MetricDoc("probe_duration_seconds", "Duration of the check's last round.", BASE_LABELS),
    MetricDoc("probe_last_round_timestamp_seconds", "When the check's last round started (unix time).", BASE_LABELS),
    MetricDoc("agent_build_info", "Agent version; value is always 1.", ("version", "python")),
    MetricDoc("agent_checks", "Checks configured."),
    MetricDoc("agent_probe_rounds_total", "Probe rounds run, by check and outcome (failures are probe errors).",
              ("check", "result"), "counter"),
    MetricDoc("agent_skipped_rounds_total", "Rounds skipped because the previous one overran.", ("check",), "counter"),
    MetricDoc("agent_scheduler_lag_seconds", "Delay between a round's slot and its start.", (), "summary"),
    MetricDoc("agent_scheduler_lag_max_seconds", "Largest scheduler lag seen."),
)
_OWN_DOCS = {m.name: m for m in METRIC_DOCS}


@dataclass
class LatestResults:
    """The last result of every check, written by the scheduler, read at scrape."""

    site: str
    results: dict[str, tuple[Check, ProbeResult]] = field(default_factory=dict)

    def record(self, check: Check, result: ProbeResult) -> None:
        self.results[check.id] = (check, result)


def _base_labels(site: str, check: Check) -> dict[str, str]:
    return {"site": site, "check": check.id, "probe": check.probe, **check.labels}


def _family(name: str, doc: MetricDoc | None) -> Metric:
    kind = doc.type if doc else "gauge"
    base = name[: -len("_total")] if kind == "counter" and name.endswith("_total") else name
    return Metric(PREFIX + base, doc.help if doc else f"{name} (user-declared)", kind)


def _own(name: str) -> Metric:
    """An empty family for one of this module's METRIC_DOCS."""
    return _family(name, _OWN_DOCS[name])


class AgentCollector(Collector):
    """Yields probe results and the agent's own health at each scrape."""

    def __init__(self, latest: LatestResults, stats: SchedulerStats | None = None, configured: int | None = None):
        self.latest = latest
        self.stats = stats
        self.configured = configured  # checks in the config; before the first round none has a result

    def collect(self) -> Iterator[Metric]:
        yield from self._probe_families()
        yield from self._health_families()

    def _probe_families(self) -> Iterator[Metric]:
        success, duration, stamp = (_own(n) for n in ("probe_success", "probe_duration_seconds",
                                                         "probe_last_round_timestamp_seconds"))
        families: dict[str, Metric] = {}
        for check, result in list(self.latest.results.values()):
            labels = _base_labels(self.latest.site, check)
            success.add_sample(success.name, labels, 1.0 if result.ok else 0.0)
            duration.add_sample(duration.name, labels, result.duration_s)
            stamp.add_sample(stamp.name, labels, result.ts)
            for s in result.samples:
                fam = families.get(s.name) or families.setdefault(s.name, _family(s.name, _DOCS.get(s.name)))
                suffix = "_total" if fam.type == "counter" else ""
                fam.add_sample(fam.name + suffix, labels | dict(s.labels), s.value)
        yield from (success, duration, stamp)
        yield from families.values()

    def _health_families(self) -> Iterator[Metric]:
        info = _own("agent_build_info")
        info.add_sample(info.name, {"version": __version__, "python": platform.python_version()}, 1.0)
        yield info
        checks = _own("agent_checks")
        configured = self.configured if self.configured is not None else len(self.latest.results)
        checks.add_sample(checks.name, {}, float(configured))
        yield checks
        if self.stats is None:
            return
        rounds = _own("agent_probe_rounds_total")
        for (check_id, ok), n in sorted(self.stats.rounds.items()):
            rounds.add_sample(rounds.name + "_total", {"check": check_id, "result": "success" if ok else "failure"}, n)
        yield rounds
        skipped = _own("agent_skipped_rounds_total")
        for check_id, n in sorted(self.stats.skipped.items()):
            skipped.add_sample(skipped.name + "_total", {"check": check_id}, n)
        yield skipped
        lag = _own("agent_scheduler_lag_seconds")
        lag.add_sample(lag.name + "_sum", {}, self.stats.lag_sum)
        lag.add_sample(lag.name + "_count", {}, self.stats.lag_count)
        yield lag
        lag_max = _own("agent_scheduler_lag_max_seconds")
        lag_max.add_sample(lag_max.name, {}, self.stats.lag_max)
        yield lag_max

