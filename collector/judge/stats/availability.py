"""availability(window): the share of rounds that succeeded, over the rounds seen.

Rounds never run (the agent was silent) are not in the denominator: silence
lowers coverage, not availability.
"""

from __future__ import annotations

import numpy as np

from commune_collector.judge.quantity import RATIO
from commune_collector.judge.stats.base import Measured, Statistic


def compute(view, metric: str | None) -> Measured:
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.where(view.rounds > 0, view.ok / np.maximum(view.rounds, 1), np.nan)
    return Measured(value, view.newest_ts, view.coverage)


SPEC = Statistic("availability", ("window",), RATIO, compute, "availability")
