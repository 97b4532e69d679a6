"""min(metric, window): the lowest round in the window (UPS runtime, battery charge)."""

from __future__ import annotations

from commune_collector.judge.stats.base import Measured, Statistic


def compute(view, metric: str | None) -> Measured:
    assert metric is not None
    return Measured(view.minimum(metric), view.value_ts(metric), view.coverage_of(view.count(metric)))


SPEC = Statistic("min", ("metric", "window"), None, compute, "min {metric}")
