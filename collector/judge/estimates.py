"""Values a source marks as "not estimated": kept out of the statistic, named in the reason.

A UPS card that estimates its runtime only on battery reports 0 on mains; the
agent (``commune_agent.power.reading.runtime_estimate``) then sends no runtime
but ``power_battery_runtime_estimated 0`` beside the round. For the judge:

- the statistic reads only real estimates (the runtime key holds nothing else);
- coverage counts every round that answered, estimated or not, so a UPS that
  went on battery for ten minutes of the hour is judged on those ten minutes'
  estimates rather than called unknown for lack of coverage;
- a window with no estimate at all, but rounds saying "not estimated", is
  unknown with that reason, never failed on a zero the card did not measure.
"""

from __future__ import annotations

import numpy as np

from commune_collector.judge.matrix import KeySpec, WindowView
from commune_collector.judge.stats.base import Measured

# value key -> the key saying whether the source estimated it (1) or reported no estimate (0)
ESTIMATED_BY: dict[str, str] = {"power_battery_runtime_seconds": "power_battery_runtime_estimated"}


def companion_specs(specs: dict[str, KeySpec]) -> dict[str, KeySpec]:
    """Keep each estimate flag wherever its value key is kept, over the same window (no histogram)."""
    return {ESTIMATED_BY[key]: KeySpec(spec.window, spec.wants) for key, spec in specs.items()
            if key in ESTIMATED_BY and ESTIMATED_BY[key] not in specs}


def account(view: WindowView, metric: str | None, measured: Measured) -> tuple[Measured, np.ndarray]:
    """The measurement with not-estimated rounds counted as covered; which rows had only those."""
    flag = ESTIMATED_BY.get(metric or "")
    if flag is None:
        return measured, np.zeros(len(measured.value), dtype=bool)
    answered = view.count(flag)
    coverage = np.maximum(measured.coverage, view.coverage_of(answered))
    only_not_estimated = np.isnan(measured.value) & (answered > 0)
    evidence_ts = np.where(only_not_estimated, view.value_ts(flag), measured.evidence_ts)
    return Measured(measured.value, evidence_ts, coverage, measured.low, measured.high), only_not_estimated
