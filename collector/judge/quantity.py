"""Units of judged values: what a metric name says it measures, and how to print it.

A criterion compares a statistic with a threshold; the two must be in the same
unit or the criterion would silently never hold (``p95(rtt) < 1%``). Units
come from the Prometheus naming convention the agent follows (``_seconds``,
``_ratio``), so a criterion file needs no unit declarations of its own.
"""

from __future__ import annotations

import math

from commune_common.units import format_duration

RATIO, SECONDS, COUNT, BOOL = "ratio", "seconds", "count", "bool"
_SUFFIX_UNITS = (("_seconds", SECONDS), ("_ratio", RATIO))
# flags the agent emits as 0/1 (power source, alarms): compared with == 0 / == 1
_FLAG_WORDS = ("on_battery", "low_battery", "replace_battery", "_up", "_ok", "_present")


def unit_of_metric(name: str) -> str:
    """``icmp_rtt_seconds`` -> seconds, ``icmp_loss_ratio`` -> ratio, ``power_on_battery`` -> bool."""
    for suffix, unit in _SUFFIX_UNITS:
        if name.endswith(suffix):
            return unit
    if any(name.endswith(word) for word in _FLAG_WORDS):
        return BOOL
    return COUNT


def format_value(value: float | None, unit: str) -> str:
    """A value as a person reads it: ``12.3%``, ``150ms``, ``24h30m``, ``3``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "no data"
    if unit == RATIO:
        return f"{value * 100:.3g}%"
    if unit == SECONDS:
        return format_seconds(value)
    return f"{value:g}"


def format_seconds(value: float) -> str:
    if value == 0:
        return "0s"
    if value < 1:
        return f"{value * 1000:.3g}ms"
    if value < 60:
        return f"{value:.3g}s"
    whole = int(round(value))
    if whole >= 48 * 3600:
        days, hours = divmod(whole // 3600, 24)
        return f"{days}d{hours}h" if hours else f"{days}d"
    hours, rest = divmod(whole, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [(hours, "h"), (minutes, "m")] + ([(seconds, "s")] if not hours else [])
    return "".join(f"{n}{u}" for n, u in parts if n) or "0s"


def format_window(seconds: float) -> str:
    """Windows as people say them: ``24h`` rather than ``1d``, ``7d`` rather than ``168h``."""
    if seconds % 3600 == 0 and 3600 <= seconds <= 48 * 3600:
        return f"{int(seconds // 3600)}h"
    return format_duration(seconds)
