"""The site box's own battery (a laptop or mini-PC with one), through psutil.

psutil comes from ``ctx.resources["psutil"]`` when present, so a test can
hand in a fake; a box without a battery fails the round with that reason.
"""

from __future__ import annotations

from typing import Literal

import psutil

from commune_agent.power.config import PowerConfig
from commune_agent.power.reading import POWER_METRICS, PowerReading, ratio
from commune_agent.probes.base import ProbeContext, ProbeError, ProbeResult, ProbeSpec

_LOW_RATIO = 0.1  # psutil reports no low-battery flag; laptops warn around 10%


class UpsHostConfig(PowerConfig):
    probe: Literal["ups_host"] = "ups_host"
    source: Literal["host"]


def reading_from(battery: object) -> PowerReading:
    """Map psutil's sbattery(percent, secsleft, power_plugged) onto the normalized reading."""
    plugged = getattr(battery, "power_plugged", None)
    percent = getattr(battery, "percent", None)
    secs = getattr(battery, "secsleft", None)
    charge = ratio(float(percent)) if percent is not None else None
    runtime = float(secs) if isinstance(secs, int | float) and secs >= 0 and not isinstance(secs, bool) else None
    on_battery = plugged is False  # None: psutil cannot tell; treat as mains rather than raise an alarm
    return PowerReading(on_battery=on_battery, charge_ratio=charge,
                        runtime_seconds=runtime if on_battery else None,
                        low_battery=(charge is not None and charge <= _LOW_RATIO and on_battery),
                        status="discharging" if on_battery else "plugged in" if plugged else "unknown")


async def run(cfg: UpsHostConfig, ctx: ProbeContext) -> ProbeResult:
    ps = ctx.resources.get("psutil", psutil)
    battery = ps.sensors_battery() if hasattr(ps, "sensors_battery") else None
    if battery is None:
        raise ProbeError("this host has no battery that the OS reports (psutil.sensors_battery() is None)")
    reading = reading_from(battery)
    return ProbeResult(ok=True, samples=reading.samples(), info={"status": reading.status})


SPEC = ProbeSpec(
    kind="ups_host",
    config=UpsHostConfig,
    run=run,
    summary="the host's own battery through psutil",
    section="power",
    metrics=POWER_METRICS,
)
