"""A network printer: its status (HOST-RESOURCES-MIB) and supply levels (Printer-MIB).

hrPrinterStatus says idle, printing or warming up; hrPrinterDetectedErrorState
is a bit string of faults (no paper, jammed, door open, ...); the Printer-MIB
supplies table gives each toner or drum level against its capacity. "Ready"
means a known good status and none of the faults that stop printing.

Whatever is readable is reported: a printer without hrPrinterTable still has
its supplies read (status and readiness are then absent, not made up). The
Printer-MIB's negative levels are states, not gaps (RFC 3805,
prtMarkerSuppliesLevel): -3 "some remaining" is known not empty, -2 is
unknown, -1 "other" means the printer places no restriction on that supply;
a capacity of -1 or -2 leaves the level without a ratio, never a made-up one.
"""

from __future__ import annotations

from typing import Any, Literal

from commune_agent.probes.base import (
    MetricDoc,
    ProbeContext,
    ProbeResult,
    ProbeSpec,
    Sample,
    sample,
)
from commune_agent.snmp import oids
from commune_agent.snmp.client import snmp_client
from commune_agent.snmp.errors import ERRORS_METRIC, SnmpMissing, counting_errors
from commune_agent.snmp.probe import SnmpProbeConfig
from commune_agent.snmp.values import integer, is_missing, octets, text

PRINTER_STATUS = {1: "other", 2: "unknown", 3: "idle", 4: "printing", 5: "warmup"}
_READY_STATUS = (3, 4, 5)
# hrPrinterDetectedErrorState bits, most significant bit of the first octet first (RFC 2790, RFC 3805)
ERROR_BITS = ("low_paper", "no_paper", "low_toner", "no_toner", "door_open", "jammed", "offline",
              "service_requested", "input_tray_missing", "output_tray_missing", "marker_supply_missing",
              "output_near_full", "output_full", "input_tray_empty", "overdue_prevent_maint")
_STOPPING = {"no_paper", "no_toner", "door_open", "jammed", "offline", "service_requested",
             "input_tray_missing", "output_tray_missing", "marker_supply_missing", "output_full"}
_MAX_ROWS = 256
# prtMarkerSuppliesLevel states (RFC 3805): what a negative level says, in words and as "some remains"
SUPPLY_OTHER, SUPPLY_UNKNOWN, SUPPLY_SOME_REMAINING = -1, -2, -3
_SUPPLY_STATES = {SUPPLY_OTHER: ("not restricted", None), SUPPLY_UNKNOWN: ("unknown", None),
                  SUPPLY_SOME_REMAINING: ("some remaining", True)}


class PrinterConfig(SnmpProbeConfig):
    probe: Literal["printer"] = "printer"


def error_flags(state: bytes) -> dict[str, bool]:
    """Decode the error-state bit string into named flags."""
    flags = {}
    for bit, name in enumerate(ERROR_BITS):
        byte = bit // 8
        flags[name] = byte < len(state) and bool(state[byte] & (0x80 >> (bit % 8)))
    return flags


def _first(rows: dict[str, Any]) -> tuple[str, Any] | None:
    for index in sorted(rows, key=lambda i: tuple(int(p) for p in i.split("."))):
        if not is_missing(rows[index]):
            return index, rows[index]
    return None


def _supply_names(table: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Row index -> a unique, readable supply name (its description, else "supply N")."""
    names, seen = {}, set()
    for index in table[oids.PRT_SUPPLY_LEVEL]:
        descr = table[oids.PRT_SUPPLY_DESCRIPTION].get(index)
        name = text(f"{oids.PRT_SUPPLY_DESCRIPTION}.{index}", descr).strip() if not is_missing(descr) else ""
        name = name or f"supply {index}"
        if name in seen:
            name = f"{name} ({index})"
        seen.add(name)
        names[index] = name
    return names


def supply_state(level: int, capacity: int | None) -> tuple[float | None, bool | None, str]:
    """One supply's (level ratio, some remains, words) from prtMarkerSuppliesLevel and its capacity.

    For a waste receptacle the MIB's level is the space left, so "remains" reads "space remains".
    """
    if level < 0:
        words, remains = _SUPPLY_STATES.get(level, (f"level {level}", None))
        return None, remains, words
    if capacity is not None and capacity > 0:
        ratio = min(level / capacity, 1.0)
        return ratio, level > 0, "empty" if level == 0 else f"{ratio * 100:.0f}%"
    return None, level > 0, "empty" if level == 0 else f"{level} (capacity unknown)"


def supply_readings(table: dict[str, dict[str, Any]]) -> tuple[list[Sample], str]:
    """Each supply's samples (ratio where measured, "remains" where known) and a line for people."""
    out, words = [], []
    for index, name in _supply_names(table).items():
        level_value, max_value = table[oids.PRT_SUPPLY_LEVEL][index], table[oids.PRT_SUPPLY_MAX_CAPACITY].get(index)
        if is_missing(level_value):
            continue
        level = integer(f"{oids.PRT_SUPPLY_LEVEL}.{index}", level_value)
        capacity = None if is_missing(max_value) else integer(f"{oids.PRT_SUPPLY_MAX_CAPACITY}.{index}", max_value)
        ratio, remains, said = supply_state(level, capacity)
        if ratio is not None:
            out.append(sample("printer_supply_level_ratio", ratio, supply=name))
        if remains is not None:
            out.append(sample("printer_supply_remaining", remains, supply=name))
        words.append(f"{name}: {said}")
    return out, "; ".join(words)


def supply_samples(table: dict[str, dict[str, Any]]) -> list[Sample]:
    """Each supply's samples (see ``supply_readings``)."""
    return supply_readings(table)[0]


def _status_samples(table: dict[str, dict[str, Any]]) -> tuple[list[Sample], dict[str, str]]:
    """hrPrinterStatus, readiness and faults where the printer has hrPrinterTable; nothing made up otherwise."""
    first = _first(table[oids.HR_PRINTER_STATUS])
    if first is None:
        return [], {"status": f"not reported (no hrPrinterStatus, {oids.HR_PRINTER_STATUS})"}
    index, status_value = first
    status = integer(f"{oids.HR_PRINTER_STATUS}.{index}", status_value)
    state = table[oids.HR_PRINTER_ERROR_STATE].get(index)
    flags = error_flags(b"" if is_missing(state) else octets(f"{oids.HR_PRINTER_ERROR_STATE}.{index}", state))
    ready = status in _READY_STATUS and not any(flags[name] for name in _STOPPING)
    samples = [sample("printer_status", status), sample("printer_ready", ready)]
    samples += [sample("printer_error", on, error=name) for name, on in flags.items()]
    faults = ", ".join(name for name, on in flags.items() if on) or "none"
    return samples, {"status": PRINTER_STATUS.get(status, str(status)), "faults": faults}


@counting_errors
async def run(cfg: PrinterConfig, ctx: ProbeContext) -> ProbeResult:
    client, device = snmp_client(ctx), cfg.device()
    table = await client.walk(device, [oids.HR_PRINTER_STATUS, oids.HR_PRINTER_ERROR_STATE,
                                       oids.PRT_SUPPLY_DESCRIPTION, oids.PRT_SUPPLY_MAX_CAPACITY,
                                       oids.PRT_SUPPLY_LEVEL], max_rows=_MAX_ROWS)
    status, info = _status_samples(table)
    supplies, said = supply_readings(table)
    if not status and not table[oids.PRT_SUPPLY_LEVEL]:
        raise SnmpMissing(f"{device.address} has no hrPrinterStatus ({oids.HR_PRINTER_STATUS}) and no Printer-MIB "
                          f"supplies ({oids.PRT_SUPPLY_LEVEL}): is it a printer?")
    if said:
        info["supplies"] = said
    return ProbeResult(ok=True, samples=tuple(status + supplies), info=info)


SPEC = ProbeSpec(
    kind="printer",
    config=PrinterConfig,
    run=run,
    summary="printer status, faults and supply levels (HOST-RESOURCES-MIB, Printer-MIB)",
    section="device",
    metrics=(
        MetricDoc("printer_status", "hrPrinterStatus: 1 other, 2 unknown, 3 idle, 4 printing, 5 warmup."),
        MetricDoc("printer_ready", "1 when the printer is idle, printing or warming up with no fault that stops it."),
        MetricDoc("printer_error", "1 while the printer reports this fault (hrPrinterDetectedErrorState).",
                  ("error",)),
        MetricDoc("printer_supply_level_ratio", "Supply level against its capacity (0-1), per toner, drum, ...",
                  ("supply",)),
        MetricDoc("printer_supply_remaining", "1 while some of the supply (or space in a waste box) remains, 0 when "
                  "empty; absent when the printer does not know (Printer-MIB -1, -2).", ("supply",)),
        ERRORS_METRIC,
    ),
)
