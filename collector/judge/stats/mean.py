"""mean(metric, window): the average of a value over every round in the window (loss, load)."""

from __future__ import annotations

import numpy as np

from commune_collector.judge.stats.base import Measured, Statistic


def compute(view, metric: str | None) -> Measured:
    assert metric is not None
    count = view.count(metric)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.where(count > 0, view.total(metric) / np.maximum(count, 1), np.nan)
    return Measured(value, view.value_ts(metric), view.coverage_of(count))


SPEC = Statistic("mean", ("metric", "window"), None, compute, "mean {metric}")
