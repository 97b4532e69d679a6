"""p50/p90/p95/p99(metric, window): a latency quantile from the merged bucket histograms.

The histograms are log-scale with ~19% wide buckets (``commune_collector.evidence``),
so a quantile is exact to within about 9%: ample for "p95 RTT under 150 ms".
"""

from __future__ import annotations

from functools import partial

from commune_collector.judge.stats.base import Measured, Statistic


def compute(q: float, view, metric: str | None) -> Measured:
    assert metric is not None
    return Measured(view.quantile(metric, q), view.value_ts(metric), view.coverage_of(view.count(metric)))


SPECS = tuple(
    Statistic(f"p{n}", ("metric", "window"), None, partial(compute, n / 100.0), f"p{n} {{metric}}", hist=True)
    for n in (50, 90, 95, 99)
)
