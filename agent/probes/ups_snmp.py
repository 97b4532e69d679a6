"""A UPS over SNMP with the standard UPS-MIB (RFC 1628), normalized to the power view.

upsOutputSource says mains or battery, upsBatteryStatus low or depleted,
upsEstimatedMinutesRemaining the runtime (in minutes: converted to seconds; 0 on
mains or a negative value is "not estimated", see ``power.reading.runtime_estimate``),
the alarm table whether a battery needs replacing (upsAlarmBatteryBad).
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
from commune_agent.snmp.values import integer, is_missing

OUTPUT_SOURCES = {1: "other", 2: "none", 3: "normal", 4: "bypass", 5: "battery", 6: "booster", 7: "reducer"}
_ON_BATTERY = 5
_BATTERY_LOW = (3, 4)  # batteryLow, batteryDepleted
_SCALARS = [oids.UPS_OUTPUT_SOURCE, oids.UPS_BATTERY_STATUS, oids.UPS_SECONDS_ON_BATTERY,
            oids.UPS_MINUTES_REMAINING, oids.UPS_CHARGE_REMAINING, oids.UPS_ALARMS_PRESENT]
_MAX_LINES = 64  # input/output lines and alarms of one UPS; more is a broken agent


class UpsSnmpConfig(PowerConfig, SnmpProbeConfig):
    probe: Literal["ups_snmp"] = "ups_snmp"
    source: Literal["snmp"]


def _int(got: dict[str, Any], oid: str) -> int | None:
    value = got.get(oid)
    return None if is_missing(value) else integer(oid, value)


def _first_row(rows: dict[str, Any], column: str) -> int | None:
    for index in sorted(rows, key=lambda i: tuple(int(p) for p in i.split("."))):
        if not is_missing(rows[index]):
            return integer(f"{column}.{index}", rows[index])
    return None


def reading_from(got: dict[str, Any], table: dict[str, dict[str, Any]], address: str) -> PowerReading:
    """Map UPS-MIB answers onto the normalized reading (a pure function: easy to test)."""
    source, seconds_on_battery = _int(got, oids.UPS_OUTPUT_SOURCE), _int(got, oids.UPS_SECONDS_ON_BATTERY)
    if source is None and seconds_on_battery is None:
        raise SnmpMissing(f"{address} reports neither upsOutputSource nor upsSecondsOnBattery: is this a UPS-MIB agent?")
    on_battery = source == _ON_BATTERY if source is not None else bool(seconds_on_battery)
    battery_status, minutes = _int(got, oids.UPS_BATTERY_STATUS), _int(got, oids.UPS_MINUTES_REMAINING)
    alarms = {str(v.prettyPrint()) for v in table[oids.UPS_ALARM_DESCR].values() if not is_missing(v)}
    alarms_known = bool(table[oids.UPS_ALARM_DESCR]) or _int(got, oids.UPS_ALARMS_PRESENT) == 0
    low = (battery_status in _BATTERY_LOW if battery_status is not None else None)
    if oids.UPS_ALARM_LOW_BATTERY in alarms:
        low = True
    loads = [integer(f"{oids.UPS_OUTPUT_PERCENT_LOAD}.{i}", v) for i, v in
             table[oids.UPS_OUTPUT_PERCENT_LOAD].items() if not is_missing(v)]
    return PowerReading(
        on_battery=on_battery,
        charge_ratio=ratio(_int(got, oids.UPS_CHARGE_REMAINING)),
        runtime_seconds=minutes * 60.0 if minutes is not None else None,  # negative: not estimated (reading.py)
        input_voltage_volts=_first_row(table[oids.UPS_INPUT_VOLTAGE], oids.UPS_INPUT_VOLTAGE),
        low_battery=low,
        replace_battery=(oids.UPS_ALARM_BATTERY_BAD in alarms) if alarms_known else None,
        load_ratio=ratio(max(loads)) if loads else None,
        status=OUTPUT_SOURCES.get(source, f"output source {source}") if source is not None else "",
    )


@counting_errors
async def run(cfg: UpsSnmpConfig, ctx: ProbeContext) -> ProbeResult:
    client, device = snmp_client(ctx), cfg.device()
    got = await client.get(device, _SCALARS)
    table = await client.walk(device, [oids.UPS_INPUT_VOLTAGE, oids.UPS_OUTPUT_PERCENT_LOAD, oids.UPS_ALARM_DESCR],
                              max_rows=_MAX_LINES)
    reading = reading_from(got, table, device.address)
    return ProbeResult(ok=True, samples=reading.samples(), info={"status": reading.status})


SPEC = ProbeSpec(
    kind="ups_snmp",
    config=UpsSnmpConfig,
    run=run,
    summary="UPS over SNMP, standard UPS-MIB (RFC 1628)",
    section="power",
    metrics=(*POWER_METRICS, ERRORS_METRIC),
)
