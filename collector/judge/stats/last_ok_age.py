"""last_ok_age(window?): seconds since a round of the check last succeeded.

It looks back as far as its threshold (``last_ok_age() < 24h`` reads 24h);
a check with rounds but no success in that time gets the whole look-back as
its value (a lower bound), so the criterion fails; no rounds at all is unknown.
"""

from __future__ import annotations

import numpy as np

from commune_collector.judge.quantity import SECONDS
from commune_collector.judge.stats.base import Measured, Statistic


def compute(view, metric: str | None) -> Measured:
    seen = view.rounds > 0
    last_ok = view.last_ok_ts
    age = np.where(np.isnan(last_ok), view.span, view.now - last_ok)
    return Measured(np.where(seen, np.maximum(age, 0.0), np.nan), view.newest_ts, np.where(seen, 1.0, 0.0))


SPEC = Statistic("last_ok_age", ("window?",), SECONDS, compute, "time since the last success",
                 window_from_threshold=True)
