"""max(metric, window): the worst round in the window (jitter, temperature)."""

from __future__ import annotations

from commune_collector.judge.stats.base import Measured, Statistic


def compute(view, metric: str | None) -> Measured:
    assert metric is not None
    return Measured(view.maximum(metric), view.value_ts(metric), view.coverage_of(view.count(metric)))


SPEC = Statistic("max", ("metric", "window"), None, compute, "max {metric}")
