"""report_age(): seconds since the site's agent last delivered a report to the collector.

Measured from the later of the last report and the judge's own start, so a
collector that was down does not count against the sites it could not hear;
until ``restart_grace`` after the start a site last heard before it is unknown
(its agent may still be backing off), never failed.
"""

from __future__ import annotations

import numpy as np

from commune_collector.judge.quantity import SECONDS
from commune_collector.judge.stats.base import Measured, Statistic


def compute(view, metric: str | None) -> Measured:
    reported = view.report_at  # per site; NaN: never reported
    since = np.fmax(reported, view.judge_started_at)
    value = np.where(np.isnan(reported), np.nan, np.maximum(view.now - since, 0.0))
    value = np.where(awaiting_agents(view), np.nan, value)
    return Measured(value, reported, np.where(np.isnan(value), 0.0, 1.0))


def awaiting_agents(view) -> np.ndarray:
    """Sites last heard before the judge started, while their agents may still be backing off.

    No age is measured for them yet (unknown, never failed): a collector that was down must not
    count against the sites it could not hear, nor reset their reporting item's stable clock.
    """
    grace = getattr(view, "restart_grace", 0.0)
    started = view.judge_started_at
    with np.errstate(invalid="ignore"):
        return (view.report_at < started) & (view.now - started < grace)


SPEC = Statistic("report_age", (), SECONDS, compute, "report age", scope="site")
