"""What every statistic shares: its signature, its unit and one vectorised function.

A statistic turns the evidence of many checks over one window into one value
per check, all at once (numpy arrays, one element per check), because a pass
judges 10,000 sites and a loop per check would not fit in its time budget.
The evidence comes as a ``WindowView`` (``commune_collector.judge.matrix``) that
computes sums, maxima and histograms over the window only when asked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    from commune_collector.judge.matrix import WindowView


@dataclass(frozen=True)
class Measured:
    """One value per check (NaN: no data), when its evidence was taken, and how complete it was."""

    value: np.ndarray
    evidence_ts: np.ndarray
    coverage: np.ndarray
    low: np.ndarray | None = None  # bounds the true value is proven to lie within (quantiles from sketches)
    high: np.ndarray | None = None


@dataclass(frozen=True)
class Statistic:
    """A statistic the criteria language knows.

    ``params`` lists the arguments in order: ``metric`` and/or ``window``, a
    trailing ``?`` making one optional. ``unit`` is the unit of the result, or
    None when it is the metric's own (``p95(x_seconds)`` is in seconds).
    ``scope`` is ``check`` for statistics of a check's rounds and ``site`` for
    facts about the site's agent (report age).
    """

    name: str
    params: tuple[str, ...]
    unit: str | None
    compute: Callable[[WindowView, str | None], Measured]
    describe: str  # how a reason names it: "availability", "p95 {metric}", ...
    scope: Literal["check", "site"] = "check"
    default_window: float | None = None
    window_from_threshold: bool = False  # ages look back as far as their threshold
    hist: bool = False  # needs the metric's latency histogram


def windowed_coverage(view: WindowView) -> np.ndarray:
    return view.coverage
