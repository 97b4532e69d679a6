"""p50/p90/p95/p99(metric, window): a latency quantile from the merged hourly sketches.

The sketches have 1 % buckets (``commune_collector.evidence``); the judge
computes, besides the shown value, bounds the exact quantile is proven to lie
within (``commune_collector.judge.sketchbins``), and a criterion is met only
when both bounds are on its good side.
"""

from __future__ import annotations

from functools import partial

from commune_collector.judge.stats.base import Measured, Statistic


def compute(q: float, view, metric: str | None) -> Measured:
    assert metric is not None
    value, low, high = view.quantile_bounds(metric, q)
    return Measured(value, view.value_ts(metric), view.coverage_of(view.count(metric)), low, high)


SPECS = tuple(
    Statistic(f"p{n}", ("metric", "window"), None, partial(compute, n / 100.0), f"p{n} {{metric}}", hist=True)
    for n in (50, 90, 95, 99)
)
