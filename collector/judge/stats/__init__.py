"""The statistics the criteria language knows: one module each, one line here.

A new statistic is a new module exposing ``SPEC`` (a ``Statistic``) and one
entry below; the expression parser, its error messages and the docs all read
this registry.
"""

from __future__ import annotations

from commune_collector.judge.stats import (
    availability,
    last,
    last_ok_age,
    maximum,
    mean,
    minimum,
    ok_rounds,
    quantile,
    report_age,
)
from commune_collector.judge.stats.base import Measured, Statistic

STATISTICS: dict[str, Statistic] = {spec.name: spec for spec in (
    availability.SPEC,
    mean.SPEC,
    minimum.SPEC,
    maximum.SPEC,
    *quantile.SPECS,
    last.SPEC,
    ok_rounds.SPEC,
    last_ok_age.SPEC,
    report_age.SPEC,
)}

__all__ = ["STATISTICS", "Measured", "Statistic"]
