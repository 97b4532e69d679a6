"""What every SNMP probe config shares, and reading sysUpTime across rounds.

sysUpTime is the device's clock for "did it reboot": it only goes backwards
when the SNMP agent restarted, or when it wraps after 497 days (2^32
hundredths of a second). ``uptime_went_backwards`` tells a reboot from a wrap
using how much time the agent itself saw pass.
"""

from __future__ import annotations

from typing import Any

from commune_agent.probes.base import TargetConfig
from commune_agent.snmp import oids
from commune_agent.snmp.client import Device, SnmpClient
from commune_agent.snmp.errors import SnmpMissing
from commune_agent.snmp.settings import SnmpSettings
from commune_agent.snmp.values import is_missing, timeticks_seconds
from commune_common.units import Host

UPTIME_WRAP_SECONDS = 2**32 / 100.0
_SLACK_SECONDS = 60.0  # clocks of agent and device drift; a wrap is "close to the top", not exactly at it


class SnmpProbeConfig(TargetConfig):
    """A check that talks SNMP to one host."""

    host: Host
    snmp: SnmpSettings

    def device(self) -> Device:
        return Device(self.host, self.snmp)

    def display_name(self) -> str:
        return self.name or self.host


def uptime_went_backwards(previous: float, elapsed: float, now: float) -> bool:
    """True for a reboot: ``now`` is below ``previous`` and a wrap cannot explain it."""
    if now >= previous:
        return False
    wrapped = previous + elapsed >= UPTIME_WRAP_SECONDS - _SLACK_SECONDS
    return not wrapped


def required(oid: str, value: Any, address: str) -> Any:
    """The value, or an SnmpMissing error naming the OID when the device has none."""
    if is_missing(value):
        raise SnmpMissing(f"{address} has no value at {oid} ({type(value).__name__})")
    return value


async def read_uptime(client: SnmpClient, device: Device) -> float:
    """sysUpTime.0 in seconds; its answer also proves the device reachable."""
    got = await client.get(device, [oids.SYS_UPTIME])
    return timeticks_seconds(oids.SYS_UPTIME, required(oids.SYS_UPTIME, got[oids.SYS_UPTIME], device.address))
