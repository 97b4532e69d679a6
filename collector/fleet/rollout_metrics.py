"""The staged rollout's families on the collector's /metrics, from the rollout task's last pass."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from commune_collector.fleet.rollout import Rollout

STATES = ("running", "halted", "promoted", "rolled_back")


class RolloutMetrics(Collector):
    """``commune_collector_rollout_halted`` and ``commune_collector_rollout_state``, from the last pass."""

    def __init__(self) -> None:
        self.rollout: Rollout | None = None  # the open rollout, or the last one seen open

    def collect(self) -> Iterator[Metric]:
        r = self.rollout
        halted = GaugeMetricFamily("commune_collector_rollout_halted",
                                   "1 while the open staged rollout of the agent profile is halted (its canaries "
                                   "did markedly worse and are served the old version again); 0 otherwise",
                                   labels=["rollout"])
        halted.add_metric([r.id if r else ""], 1.0 if r is not None and r.state == "halted" else 0.0)
        yield halted
        state = GaugeMetricFamily("commune_collector_rollout_state",
                                  "1 for the state of the latest staged rollout this collector followed",
                                  labels=["rollout", "state"])
        if r is not None:
            for s in STATES:
                state.add_metric([r.id, s], 1.0 if r.state == s else 0.0)
        yield state
