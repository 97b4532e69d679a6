"""last(metric, window?): the newest value (power source, UPS flags), looked for within 1h by default.

A value older than its window is no evidence of the present: the result is
unknown rather than a stale reading.
"""

from __future__ import annotations

import numpy as np

from commune_collector.judge.stats.base import Measured, Statistic


def compute(view, metric: str | None) -> Measured:
    assert metric is not None
    value, when = view.last(metric)
    return Measured(value, when, np.where(np.isnan(when), 0.0, 1.0))


SPEC = Statistic("last", ("metric", "window?"), None, compute, "{metric}", default_window=3600.0)
