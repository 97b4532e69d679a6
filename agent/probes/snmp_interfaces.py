"""IF-MIB interfaces: up or down, speed, traffic rates, errors and discards.

Rates need two rounds: each round keeps its counters in ``ctx.state`` and the
next one divides the difference by the time between them. A negative
difference is a counter wrap (add 2^32 or 2^64) unless the device rebooted,
which sysUpTime tells: then the baseline starts again and that round reports
no rate rather than a made-up one. sysUpTime is read before and after the walk,
so a reboot in the middle of a walk (counters half old, half new) fails the
round instead of producing a spike. 64-bit ifHC counters are used where the
device has ifXTable, 32-bit ifIn/OutOctets otherwise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, field_validator

from commune_agent.probes.base import (
    MetricDoc,
    ProbeContext,
    ProbeResult,
    ProbeSpec,
    Sample,
    sample,
)
from commune_agent.snmp import oids
from commune_agent.snmp.client import DEFAULT_MAX_ROWS, Table, snmp_client
from commune_agent.snmp.errors import ERRORS_METRIC, SnmpRebooted, counting_errors
from commune_agent.snmp.probe import SnmpProbeConfig, read_uptime, uptime_went_backwards
from commune_agent.snmp.values import counter, integer, is_missing, text

COLUMNS = (oids.IF_DESCR, oids.IF_SPEED, oids.IF_ADMIN_STATUS, oids.IF_OPER_STATUS, oids.IF_IN_OCTETS,
           oids.IF_IN_DISCARDS, oids.IF_IN_ERRORS, oids.IF_OUT_OCTETS, oids.IF_OUT_DISCARDS, oids.IF_OUT_ERRORS,
           oids.IF_NAME, oids.IF_HC_IN_OCTETS, oids.IF_HC_OUT_OCTETS, oids.IF_HIGH_SPEED)
_UP = 1  # ifAdminStatus/ifOperStatus up(1)
_IMPLAUSIBLE = 2.0  # a "wrap" faster than twice the line speed is a counter reset, not traffic


def check_patterns(patterns: list[str]) -> list[str]:
    """Refuse a bad regex at config load, naming it, rather than at the first round."""
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"{pattern!r} is not a regular expression: {exc}") from None
    return patterns


class SnmpInterfacesConfig(SnmpProbeConfig):
    probe: Literal["snmp_interfaces"] = "snmp_interfaces"
    include: list[str] = Field(default_factory=list, description="interface name regexes to report (anchored); "
                               "default all")
    exclude: list[str] = Field(default_factory=list, description="interface name regexes to leave out (anchored)")
    max_rows: int = Field(default=DEFAULT_MAX_ROWS, ge=1, le=1_000_000,
                          description="more rows than this in a column fails the round")

    _compiles = field_validator("include", "exclude")(lambda cls, v: check_patterns(v))

    def selects(self, name: str) -> bool:
        if self.include and not any(re.fullmatch(p, name) for p in self.include):
            return False
        return not any(re.fullmatch(p, name) for p in self.exclude)


@dataclass(frozen=True)
class Interface:
    """One row of ifTable/ifXTable, typed."""

    index: str
    name: str
    admin_up: bool
    oper_up: bool
    speed_bps: float | None
    in_octets: int | None
    out_octets: int | None
    bits: int  # counter width of in/out octets: 64 from ifXTable, 32 from ifTable
    counters: dict[str, int]  # errors and discards


def _cell(table: Table, column: str, index: str) -> Any:
    value = table[column].get(index)
    return None if is_missing(value) else value


def _name(table: Table, index: str) -> str:
    for column in (oids.IF_NAME, oids.IF_DESCR):
        value = _cell(table, column, index)
        if value is not None and text(f"{column}.{index}", value).strip():
            return text(f"{column}.{index}", value).strip()
    return f"if{index}"


def _speed(table: Table, index: str) -> float | None:
    high = _cell(table, oids.IF_HIGH_SPEED, index)
    if high is not None and integer(f"{oids.IF_HIGH_SPEED}.{index}", high) > 0:
        return integer(f"{oids.IF_HIGH_SPEED}.{index}", high) * 1e6
    low = _cell(table, oids.IF_SPEED, index)
    return float(integer(f"{oids.IF_SPEED}.{index}", low)) if low is not None else None


def _octets(table: Table, index: str) -> tuple[int | None, int | None, int]:
    hc_in, hc_out = _cell(table, oids.IF_HC_IN_OCTETS, index), _cell(table, oids.IF_HC_OUT_OCTETS, index)
    if hc_in is not None and hc_out is not None:
        return (counter(f"{oids.IF_HC_IN_OCTETS}.{index}", hc_in)[0],
                counter(f"{oids.IF_HC_OUT_OCTETS}.{index}", hc_out)[0], 64)
    lo_in, lo_out = _cell(table, oids.IF_IN_OCTETS, index), _cell(table, oids.IF_OUT_OCTETS, index)
    return (counter(f"{oids.IF_IN_OCTETS}.{index}", lo_in)[0] if lo_in is not None else None,
            counter(f"{oids.IF_OUT_OCTETS}.{index}", lo_out)[0] if lo_out is not None else None, 32)


_ERROR_COLUMNS = {"receive_errors": oids.IF_IN_ERRORS, "transmit_errors": oids.IF_OUT_ERRORS,
                  "receive_discards": oids.IF_IN_DISCARDS, "transmit_discards": oids.IF_OUT_DISCARDS}


def parse_interfaces(table: Table) -> list[Interface]:
    """Typed rows; any cell of the wrong type raises SnmpTypeError naming its OID."""
    indexes = sorted(set(table[oids.IF_DESCR]) | set(table[oids.IF_NAME]) | set(table[oids.IF_OPER_STATUS]),
                     key=lambda i: tuple(int(p) for p in i.split(".")))
    rows, seen = [], set()
    for index in indexes:
        name = _name(table, index)
        if name in seen:  # some firmware repeats ifDescr; keep label values unique
            name = f"{name} ({index})"
        seen.add(name)
        admin, oper = _cell(table, oids.IF_ADMIN_STATUS, index), _cell(table, oids.IF_OPER_STATUS, index)
        in_octets, out_octets, bits = _octets(table, index)
        counters = {key: counter(f"{col}.{index}", v)[0] for key, col in _ERROR_COLUMNS.items()
                    if (v := _cell(table, col, index)) is not None}
        rows.append(Interface(index, name,
                              admin is not None and integer(f"{oids.IF_ADMIN_STATUS}.{index}", admin) == _UP,
                              oper is not None and integer(f"{oids.IF_OPER_STATUS}.{index}", oper) == _UP,
                              _speed(table, index), in_octets, out_octets, bits, counters))
    return rows


def counter_delta(previous: int, current: int, bits: int) -> int:
    """Increase of a counter between two reads, across one wrap."""
    delta = current - previous
    return delta + 2**bits if delta < 0 else delta


def _one_rate(previous: int, current: int, bits: int, elapsed: float, speed_bps: float | None) -> float | None:
    """Bytes per second (Prometheus base units; multiply by 8 for the bits on the wire)."""
    rate = counter_delta(previous, current, bits) / elapsed
    if speed_bps and rate * 8 > _IMPLAUSIBLE * speed_bps:
        return None  # the counter was reset (e.g. cleared by an operator), not wrapped
    return rate


def _rates(prev: tuple[int, int, int] | None, iface: Interface, elapsed: float) -> tuple[float | None, float | None]:
    """(receive, transmit) bytes per second; None where there is no comparable earlier reading."""
    if prev is None or elapsed <= 0 or iface.in_octets is None or iface.out_octets is None or prev[2] != iface.bits:
        return None, None
    return (_one_rate(prev[0], iface.in_octets, iface.bits, elapsed, iface.speed_bps),
            _one_rate(prev[1], iface.out_octets, iface.bits, elapsed, iface.speed_bps))


def _interface_samples(iface: Interface, rates: tuple[float | None, float | None]) -> list[Sample]:
    out = [sample("snmp_interface_admin_up", iface.admin_up, ifname=iface.name),
           sample("snmp_interface_oper_up", iface.oper_up, ifname=iface.name)]
    if iface.speed_bps is not None:
        out.append(sample("snmp_interface_speed_bytes_per_second", iface.speed_bps / 8, ifname=iface.name))
    if iface.in_octets is not None:
        out.append(sample("snmp_interface_receive_bytes_total", iface.in_octets, ifname=iface.name))
    if iface.out_octets is not None:
        out.append(sample("snmp_interface_transmit_bytes_total", iface.out_octets, ifname=iface.name))
    for direction, rate in zip(("receive", "transmit"), rates, strict=True):
        if rate is not None:
            out.append(sample(f"snmp_interface_{direction}_bytes_per_second", rate, ifname=iface.name))
    out += [sample(f"snmp_interface_{key}_total", n, ifname=iface.name) for key, n in iface.counters.items()]
    return out


@counting_errors
async def run(cfg: SnmpInterfacesConfig, ctx: ProbeContext) -> ProbeResult:
    client, device = snmp_client(ctx), cfg.device()
    before = await read_uptime(client, device)
    now = ctx.monotonic()
    table = await client.walk(device, COLUMNS, max_rows=cfg.max_rows)
    after = await read_uptime(client, device)
    previous: dict[str, Any] | None = ctx.state.get("last")
    if uptime_went_backwards(before, ctx.monotonic() - now, after):
        ctx.state.pop("last", None)
        raise SnmpRebooted(f"{device.address} rebooted during the walk (sysUpTime {before:.0f}s -> {after:.0f}s); "
                           "its counters start again next round")
    interfaces = [i for i in parse_interfaces(table) if cfg.selects(i.name)]
    rebooted = previous is not None and uptime_went_backwards(previous["uptime"], now - previous["at"], before)
    baseline = None if previous is None or rebooted else previous
    samples: list[Sample] = []
    for iface in interfaces:
        prev = baseline["counters"].get(iface.index) if baseline else None
        samples += _interface_samples(iface, _rates(prev, iface, now - baseline["at"]) if baseline else (None, None))
    ctx.state["last"] = {"uptime": before, "at": now, "counters": {
        i.index: (i.in_octets, i.out_octets, i.bits) for i in interfaces
        if i.in_octets is not None and i.out_octets is not None}}
    admin_up = [i for i in interfaces if i.admin_up]
    samples += [sample("snmp_interfaces_selected", len(interfaces)),
                sample("snmp_interfaces_admin_up", len(admin_up)),
                sample("snmp_interfaces_oper_up", sum(1 for i in admin_up if i.oper_up))]
    info = {"interfaces": f"{len(interfaces)} selected of {len(table[oids.IF_DESCR]) or len(table[oids.IF_NAME])}"}
    if rebooted:
        info["reboot"] = "the device rebooted since the last round: rates start again next round"
    return ProbeResult(ok=True, samples=tuple(samples), info=info)


SPEC = ProbeSpec(
    kind="snmp_interfaces",
    config=SnmpInterfacesConfig,
    run=run,
    summary="IF-MIB interfaces: status, speed, traffic rates, errors, discards",
    section="device",
    metrics=(
        MetricDoc("snmp_interface_admin_up", "1 when the interface is administratively up (ifAdminStatus).",
                  ("ifname",)),
        MetricDoc("snmp_interface_oper_up", "1 when the interface is operationally up (ifOperStatus).", ("ifname",)),
        MetricDoc("snmp_interface_speed_bytes_per_second",
                  "Interface speed (ifHighSpeed, else ifSpeed), in bytes per second (x8 for bits).", ("ifname",)),
        MetricDoc("snmp_interface_receive_bytes_per_second",
                  "Traffic received between the last two rounds (x8 for bits per second); absent on the first "
                  "round and after a reboot or a counter reset.", ("ifname",)),
        MetricDoc("snmp_interface_transmit_bytes_per_second",
                  "Traffic sent between the last two rounds (x8 for bits per second); absent on the first "
                  "round and after a reboot or a counter reset.", ("ifname",)),
        MetricDoc("snmp_interface_receive_bytes_total", "ifHCInOctets (ifInOctets without ifXTable).", ("ifname",),
                  "counter"),
        MetricDoc("snmp_interface_transmit_bytes_total", "ifHCOutOctets (ifOutOctets without ifXTable).",
                  ("ifname",), "counter"),
        MetricDoc("snmp_interface_receive_errors_total", "ifInErrors.", ("ifname",), "counter"),
        MetricDoc("snmp_interface_transmit_errors_total", "ifOutErrors.", ("ifname",), "counter"),
        MetricDoc("snmp_interface_receive_discards_total", "ifInDiscards.", ("ifname",), "counter"),
        MetricDoc("snmp_interface_transmit_discards_total", "ifOutDiscards.", ("ifname",), "counter"),
        MetricDoc("snmp_interfaces_selected", "Interfaces the include/exclude patterns select."),
        MetricDoc("snmp_interfaces_admin_up", "Selected interfaces that are administratively up."),
        MetricDoc("snmp_interfaces_oper_up", "Selected, administratively up interfaces that are operationally up."),
        ERRORS_METRIC,
    ),
)
