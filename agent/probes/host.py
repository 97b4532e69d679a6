"""The site box itself: CPU, memory, disk, uptime, interfaces, battery, temperatures.

psutil is taken from the context (``ctx.resources["psutil"]``) when present,
so tests can hand in a fake that returns fixed readings.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Literal

import psutil
from pydantic import Field

from commune_agent.probes.base import (
    MetricDoc,
    ProbeContext,
    ProbeResult,
    ProbeSpec,
    Sample,
    TargetConfig,
    sample,
)

FIRST_CPU_SAMPLE_SECONDS = 0.25


class HostConfig(TargetConfig):
    probe: Literal["host"] = "host"
    disks: list[str] = Field(default_factory=lambda: ["/"], description="mount points to report")
    interfaces: list[str] | None = Field(default=None, description="interfaces to report; default all but lo")

    def display_name(self) -> str:
        return self.name or "host"


def _interface_samples(ps: Any, wanted: list[str] | None) -> list[Sample]:
    out = []
    for nic, c in ps.net_io_counters(pernic=True).items():
        if (wanted is None and nic == "lo") or (wanted is not None and nic not in wanted):
            continue
        out += [sample("host_network_receive_bytes_total", c.bytes_recv, interface=nic),
                sample("host_network_transmit_bytes_total", c.bytes_sent, interface=nic),
                sample("host_network_receive_errors_total", c.errin, interface=nic),
                sample("host_network_transmit_errors_total", c.errout, interface=nic),
                sample("host_network_receive_drops_total", c.dropin, interface=nic),
                sample("host_network_transmit_drops_total", c.dropout, interface=nic)]
    return out


def _sensor(ps: Any, name: str) -> Any:
    """A psutil sensor reading, None when the OS has no such sensor or no /sys to read it from.

    psutil raises FileNotFoundError where /sys/class/power_supply is missing
    (a chroot, some containers) instead of answering None.
    """
    try:
        return getattr(ps, name)() if hasattr(ps, name) else None
    except OSError:
        return None


def _sensor_samples(ps: Any) -> list[Sample]:
    out = []
    battery = _sensor(ps, "sensors_battery")
    if battery is not None:
        out += [sample("host_battery_charge_ratio", battery.percent / 100.0),
                sample("host_on_battery", 0.0 if battery.power_plugged else 1.0)]
    temps = _sensor(ps, "sensors_temperatures")
    for chip, readings in (temps or {}).items():
        for i, r in enumerate(readings):
            out.append(sample("host_temperature_celsius", r.current, sensor=f"{chip}/{r.label or i}"))
    return out


def collect(cfg: HostConfig, ps: Any) -> list[Sample]:
    """Every host reading as samples; missing sensors are simply absent."""
    mem = ps.virtual_memory()
    out = [sample("host_cpu_usage_ratio", ps.cpu_percent(interval=None) / 100.0),
           sample("host_load1", ps.getloadavg()[0]),
           sample("host_memory_used_ratio", mem.percent / 100.0),
           sample("host_memory_available_bytes", mem.available),
           sample("host_uptime_seconds", time.time() - ps.boot_time())]
    for mount in cfg.disks:
        try:
            du = ps.disk_usage(mount)
        except OSError:
            continue
        out += [sample("host_disk_used_ratio", du.percent / 100.0, mount=mount),
                sample("host_disk_free_bytes", du.free, mount=mount)]
    return out + _interface_samples(ps, cfg.interfaces) + _sensor_samples(ps)


async def run(cfg: HostConfig, ctx: ProbeContext) -> ProbeResult:
    ps = ctx.resources.get("psutil", psutil)
    if not ctx.state.get("cpu_primed"):
        # cpu_percent compares with the previous call; the first one (probe-once, a fresh
        # agent) would compare with import time and read 0% or 100%: take a short sample
        ps.cpu_percent(interval=None)
        ctx.state["cpu_primed"] = True
        await asyncio.sleep(FIRST_CPU_SAMPLE_SECONDS)
    return ProbeResult(ok=True, samples=tuple(collect(cfg, ps)))


SPEC = ProbeSpec(
    kind="host",
    config=HostConfig,
    run=run,
    summary="site box CPU, memory, disk, uptime, interfaces, battery, temperatures",
    section="host",
    metrics=(
        MetricDoc("host_cpu_usage_ratio", "CPU busy share since the previous round (0-1)."),
        MetricDoc("host_load1", "One-minute load average."),
        MetricDoc("host_memory_used_ratio", "Memory in use (0-1)."),
        MetricDoc("host_memory_available_bytes", "Memory available to new processes."),
        MetricDoc("host_uptime_seconds", "Seconds since the box booted."),
        MetricDoc("host_disk_used_ratio", "Disk space in use per mount (0-1).", ("mount",)),
        MetricDoc("host_disk_free_bytes", "Free disk space per mount.", ("mount",)),
        MetricDoc("host_network_receive_bytes_total", "Bytes received per interface.", ("interface",), "counter"),
        MetricDoc("host_network_transmit_bytes_total", "Bytes sent per interface.", ("interface",), "counter"),
        MetricDoc("host_network_receive_errors_total", "Receive errors per interface.", ("interface",), "counter"),
        MetricDoc("host_network_transmit_errors_total", "Transmit errors per interface.", ("interface",), "counter"),
        MetricDoc("host_network_receive_drops_total", "Inbound packets dropped per interface.", ("interface",), "counter"),
        MetricDoc("host_network_transmit_drops_total", "Outbound packets dropped per interface.", ("interface",), "counter"),
        MetricDoc("host_battery_charge_ratio", "Charge of the box's own battery (0-1), where it has one."),
        MetricDoc("host_on_battery", "1 when the box runs on its own battery, 0 on mains."),
        MetricDoc("host_temperature_celsius", "Temperature per sensor.", ("sensor",)),
    ),
)
