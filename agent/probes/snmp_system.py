"""SNMP system group: is the device reachable, how long has it been up, did it reboot.

A reboot is sysUpTime going backwards between two rounds (a 497-day wrap is
told apart); the count of reboots seen is a counter, so a device that power
cycles every night shows up in ``increase()`` even when each round succeeds.
"""

from __future__ import annotations

from typing import Literal

from commune_agent.probes.base import MetricDoc, ProbeContext, ProbeResult, ProbeSpec, sample
from commune_agent.snmp import oids
from commune_agent.snmp.client import snmp_client
from commune_agent.snmp.errors import ERRORS_METRIC, counting_errors
from commune_agent.snmp.probe import SnmpProbeConfig, required, uptime_went_backwards
from commune_agent.snmp.values import is_missing, text, timeticks_seconds

_INFO_MAX = 200  # sysDescr can run to pages on some firmware; a label should not


class SnmpSystemConfig(SnmpProbeConfig):
    probe: Literal["snmp_system"] = "snmp_system"


def _text_or_empty(oid: str, value: object) -> str:
    return "" if is_missing(value) else text(oid, value)


@counting_errors
async def run(cfg: SnmpSystemConfig, ctx: ProbeContext) -> ProbeResult:
    device = cfg.device()
    got = await snmp_client(ctx).get(device, [oids.SYS_DESCR, oids.SYS_OBJECT_ID, oids.SYS_UPTIME, oids.SYS_NAME])
    uptime = timeticks_seconds(oids.SYS_UPTIME, required(oids.SYS_UPTIME, got[oids.SYS_UPTIME], device.address))
    now = ctx.monotonic()
    previous = ctx.state.get("uptime")
    if previous is not None and uptime_went_backwards(previous[0], now - previous[1], uptime):
        ctx.state["reboots"] = ctx.state.get("reboots", 0) + 1
    ctx.state["uptime"] = (uptime, now)
    name = _text_or_empty(oids.SYS_NAME, got[oids.SYS_NAME])
    descr = _text_or_empty(oids.SYS_DESCR, got[oids.SYS_DESCR])
    object_id = "" if is_missing(got[oids.SYS_OBJECT_ID]) else str(got[oids.SYS_OBJECT_ID].prettyPrint())
    samples = (
        sample("snmp_system_uptime_seconds", uptime),
        sample("snmp_system_reboots_total", ctx.state.get("reboots", 0)),
        sample("snmp_system_info", 1, sys_name=name[:_INFO_MAX], sys_descr=" ".join(descr.split())[:_INFO_MAX],
               sys_object_id=object_id),
    )
    return ProbeResult(ok=True, samples=samples, info={"sysName": name, "sysDescr": descr, "sysObjectID": object_id})


SPEC = ProbeSpec(
    kind="snmp_system",
    config=SnmpSystemConfig,
    run=run,
    summary="SNMP reachability, sysUpTime and reboots, sysName and sysDescr",
    section="device",
    metrics=(
        MetricDoc("snmp_system_uptime_seconds", "sysUpTime of the device's SNMP agent."),
        MetricDoc("snmp_system_reboots_total", "Reboots seen since the agent started (sysUpTime went backwards).",
                  type="counter"),
        MetricDoc("snmp_system_info", "sysName, sysDescr (first 200 characters) and sysObjectID; value is always 1.",
                  ("sys_name", "sys_descr", "sys_object_id")),
        ERRORS_METRIC,
    ),
)
