"""report_age(): seconds since the site's agent last delivered a report to the collector.

Measured from the later of the last report and the judge's own start, so a
collector that was down does not count against the sites it could not hear.
"""

from __future__ import annotations

import numpy as np

from commune_collector.judge.quantity import SECONDS
from commune_collector.judge.stats.base import Measured, Statistic


def compute(view, metric: str | None) -> Measured:
    reported = view.report_at  # per site; NaN: never reported
    since = np.fmax(reported, view.judge_started_at)
    value = np.where(np.isnan(reported), np.nan, np.maximum(view.now - since, 0.0))
    return Measured(value, reported, np.where(np.isnan(reported), 0.0, 1.0))


SPEC = Statistic("report_age", (), SECONDS, compute, "report age", scope="site")
