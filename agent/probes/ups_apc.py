"""An APC UPS over SNMP with its PowerNet-MIB, normalized to the power view.

APC network cards often answer PowerNet better than UPS-MIB. The
high-precision objects (tenths) are used where the card has them, the basic
ones otherwise; upsAdvBatteryRunTimeRemaining is TimeTicks, turned into seconds.
"""

from __future__ import annotations

from typing import Any, Literal

from commune_agent.power.config import PowerConfig
from commune_agent.power.reading import POWER_METRICS, PowerReading, ratio
from commune_agent.probes.base import ProbeContext, ProbeResult, ProbeSpec
from commune_agent.snmp import oids
from commune_agent.snmp.client import snmp_client
from commune_agent.snmp.errors import ERRORS_METRIC, SnmpMissing, counting_errors
from commune_agent.snmp.probe import SnmpProbeConfig
from commune_agent.snmp.values import integer, is_missing, timeticks_seconds

# upsBasicOutputStatus values (PowerNet-MIB)
OUTPUT_STATUS = {1: "unknown", 2: "onLine", 3: "onBattery", 4: "onSmartBoost", 5: "timedSleeping",
                 6: "softwareBypass", 7: "off", 8: "rebooting", 9: "switchedBypass", 10: "hardwareFailureBypass",
                 11: "sleepingUntilPowerReturn", 12: "onSmartTrim", 13: "ecoMode", 14: "hotStandby",
                 15: "onBatteryTest", 16: "emergencyStaticBypass", 17: "staticBypassStandby",
                 18: "powerSavingMode", 19: "spotMode", 20: "eConversion"}
_ON_BATTERY = (3, 15)  # onBattery, onBatteryTest
_BATTERY_LOW = 3  # upsBasicBatteryStatus batteryLow
_REPLACE = 2  # upsAdvBatteryReplaceIndicator batteryNeedsReplacing
_OIDS = [oids.APC_BASIC_OUTPUT_STATUS, oids.APC_BASIC_BATTERY_STATUS, oids.APC_ADV_BATTERY_CAPACITY,
         oids.APC_HIGHPREC_BATTERY_CAPACITY, oids.APC_ADV_BATTERY_RUNTIME, oids.APC_ADV_BATTERY_REPLACE,
         oids.APC_ADV_INPUT_VOLTAGE, oids.APC_HIGHPREC_INPUT_VOLTAGE, oids.APC_ADV_OUTPUT_LOAD,
         oids.APC_HIGHPREC_OUTPUT_LOAD]


class UpsApcConfig(PowerConfig, SnmpProbeConfig):
    probe: Literal["ups_apc"] = "ups_apc"
    source: Literal["apc"]


def _int(got: dict[str, Any], oid: str) -> int | None:
    value = got.get(oid)
    return None if is_missing(value) else integer(oid, value)


def _precise(got: dict[str, Any], tenths_oid: str, whole_oid: str) -> float | None:
    """The high-precision value (tenths) where present and valid, else the basic one."""
    tenths = _int(got, tenths_oid)
    if tenths is not None and tenths >= 0:
        return tenths / 10.0
    whole = _int(got, whole_oid)
    return float(whole) if whole is not None and whole >= 0 else None


def reading_from(got: dict[str, Any], address: str) -> PowerReading:
    """Map PowerNet answers onto the normalized reading."""
    status = _int(got, oids.APC_BASIC_OUTPUT_STATUS)
    if status is None:
        raise SnmpMissing(f"{address} has no upsBasicOutputStatus ({oids.APC_BASIC_OUTPUT_STATUS}): "
                          "is this an APC UPS (not a PDU)?")
    battery, replace = _int(got, oids.APC_BASIC_BATTERY_STATUS), _int(got, oids.APC_ADV_BATTERY_REPLACE)
    runtime = got.get(oids.APC_ADV_BATTERY_RUNTIME)
    return PowerReading(
        on_battery=status in _ON_BATTERY,
        charge_ratio=ratio(_precise(got, oids.APC_HIGHPREC_BATTERY_CAPACITY, oids.APC_ADV_BATTERY_CAPACITY)),
        runtime_seconds=None if is_missing(runtime) else timeticks_seconds(oids.APC_ADV_BATTERY_RUNTIME, runtime),
        input_voltage_volts=_precise(got, oids.APC_HIGHPREC_INPUT_VOLTAGE, oids.APC_ADV_INPUT_VOLTAGE),
        low_battery=battery == _BATTERY_LOW if battery is not None else None,
        replace_battery=replace == _REPLACE if replace is not None else None,
        load_ratio=ratio(_precise(got, oids.APC_HIGHPREC_OUTPUT_LOAD, oids.APC_ADV_OUTPUT_LOAD)),
        status=OUTPUT_STATUS.get(status, f"status {status}"),
    )


@counting_errors
async def run(cfg: UpsApcConfig, ctx: ProbeContext) -> ProbeResult:
    device = cfg.device()
    reading = reading_from(await snmp_client(ctx).get(device, _OIDS), device.address)
    return ProbeResult(ok=True, samples=reading.samples(), info={"status": reading.status})


SPEC = ProbeSpec(
    kind="ups_apc",
    config=UpsApcConfig,
    run=run,
    summary="APC UPS over SNMP, PowerNet-MIB",
    section="power",
    metrics=(*POWER_METRICS, ERRORS_METRIC),
)
