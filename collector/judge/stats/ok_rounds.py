"""ok_rounds(window): how many rounds succeeded in the window ("the backup link answered")."""

from __future__ import annotations

import numpy as np

from commune_collector.judge.quantity import COUNT
from commune_collector.judge.stats.base import Measured, Statistic


def compute(view, metric: str | None) -> Measured:
    seen = view.rounds > 0
    return Measured(np.where(seen, view.ok.astype(float), np.nan), view.newest_ts,
                    np.where(seen, 1.0, 0.0))


SPEC = Statistic("ok_rounds", ("window",), COUNT, compute, "successful rounds")
