"""Why a criterion is met, not met or unknown, as data: a reason code and its parameters.

The judge never writes sentences: it says *which* reason and with *what*
numbers (``Reason("measured", {"value": 0.123, "unit": "ratio", ...})``).
People read them through one catalogue (``commune_collector.reasons``) in
their own language, on the pages, in exports, in alerts and in the API, so a
new reason is one code here (or in the module that decides it) and one entry
with its Vietnamese and English text in ``data/reasons.yaml``.

Parameters are JSON values: numbers in base units (ratio, seconds), the unit
they are in, and names given in both languages as ``{"en": ..., "vi": ...}``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from commune_collector.judge.criteria import Criterion
from commune_collector.judge.evaluate import (
    WHY_AWAITING_AGENT,
    WHY_LOW_COVERAGE,
    WHY_NO_CHECK,
    WHY_NO_DATA,
    WHY_NOT_ESTIMATED,
    WHY_TOO_CLOSE,
)
from commune_common.wire import split_key

_NO_WINDOW_IN_REASON = {"last", "last_ok_age", "report_age"}


@dataclass(frozen=True)
class Reason:
    """A reason code and its parameters; ``to_json`` is what the API and the history store."""

    code: str
    params: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "params": self.params}


def metric_label(key: str | None) -> str:
    """``icmp_rtt_seconds{stat="avg"}`` -> ``icmp rtt (avg)``."""
    if not key:
        return ""
    name, labels = split_key(key)
    for suffix in ("_seconds", "_ratio"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    text = name.replace("_", " ")
    return f"{text} ({labels['stat']})" if "stat" in labels else text


def value_label(crit: Criterion) -> str:
    return crit.label or crit.expr.statistic.describe.format(metric=metric_label(crit.expr.metric))


def select_text(crit: Criterion) -> str:
    parts = [f"{k}={'|'.join(v) if isinstance(v, list) else v}" for k, v in crit.select.items()]
    return "{" + ", ".join(parts) + "}"


def what(crit: Criterion) -> dict[str, str]:
    """How a reason names the measured value: the English label, the Vietnamese criterion title."""
    return {"en": value_label(crit), "vi": crit.title.vi}


def criterion_reason(crit: Criterion, value: float, why: int, coverage: float, min_coverage: float,
                     low: float = math.nan, high: float = math.nan) -> Reason:
    """The reason one criterion's outcome at one site has (``why`` from ``evaluate``; ``low``/``high``:
    the proven bounds of a quantile)."""
    expr = crit.expr
    window = expr.window or 0.0
    if why == WHY_NO_CHECK:
        return Reason("no_check", {"select": select_text(crit)})
    if why == WHY_NO_DATA:
        if crit.scope == "site":
            return Reason("never_reported")
        if expr.stat == "last":
            return Reason("no_value", {"what": what(crit), "window_s": window})
        return Reason("no_evidence", {"window_s": window}) if window else Reason("no_evidence_ever")
    if why == WHY_AWAITING_AGENT:
        return Reason("awaiting_agent")
    if why == WHY_NOT_ESTIMATED:
        return Reason("not_estimated", {"what": what(crit), "window_s": window})
    if why == WHY_TOO_CLOSE:
        return Reason("too_close", {"what": what(crit), "low": float(low), "high": float(high), "unit": expr.unit,
                                    "threshold": float(expr.threshold), "window_s": window})
    if why == WHY_LOW_COVERAGE:
        return Reason("low_coverage", {"coverage": float(coverage), "needed": float(min_coverage),
                                       "window_s": window})
    params = {"what": what(crit), "value": float(value), "unit": expr.unit, "op": expr.op,
              "threshold": float(expr.threshold)}
    if expr.unit == "bool" and expr.op == "==":
        return Reason("flag", params)
    if expr.stat in _NO_WINDOW_IN_REASON or not window:
        return Reason("measured_now", params)
    return Reason("measured", {**params, "window_s": window})
