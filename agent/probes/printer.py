"""A network printer: its status (HOST-RESOURCES-MIB) and supply levels (Printer-MIB).

hrPrinterStatus says idle, printing or warming up; hrPrinterDetectedErrorState
is a bit string of faults (no paper, jammed, door open, ...); the Printer-MIB
supplies table gives each toner or drum level against its capacity. "Ready"
means a known good status and none of the faults that stop printing.
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
_SUPPLY_UNKNOWN = -2


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


def supply_samples(table: dict[str, dict[str, Any]]) -> list[Sample]:
    """Each supply's level as a share of its capacity, where the printer knows both."""
    out, seen = [], set()
    for index, level_value in table[oids.PRT_SUPPLY_LEVEL].items():
        max_value = table[oids.PRT_SUPPLY_MAX_CAPACITY].get(index)
        if is_missing(level_value) or is_missing(max_value):
            continue
        level = integer(f"{oids.PRT_SUPPLY_LEVEL}.{index}", level_value)
        capacity = integer(f"{oids.PRT_SUPPLY_MAX_CAPACITY}.{index}", max_value)
        descr = table[oids.PRT_SUPPLY_DESCRIPTION].get(index)
        name = text(f"{oids.PRT_SUPPLY_DESCRIPTION}.{index}", descr).strip() if not is_missing(descr) else ""
        name = name or f"supply {index}"
        if name in seen:
            name = f"{name} ({index})"
        seen.add(name)
        if level >= 0 and capacity > 0:
            out.append(sample("printer_supply_level_ratio", min(level / capacity, 1.0), supply=name))
        elif level == _SUPPLY_UNKNOWN or capacity <= 0:
            continue  # the printer does not know; better absent than a made-up 0
    return out


@counting_errors
async def run(cfg: PrinterConfig, ctx: ProbeContext) -> ProbeResult:
    client, device = snmp_client(ctx), cfg.device()
    table = await client.walk(device, [oids.HR_PRINTER_STATUS, oids.HR_PRINTER_ERROR_STATE,
                                       oids.PRT_SUPPLY_DESCRIPTION, oids.PRT_SUPPLY_MAX_CAPACITY,
                                       oids.PRT_SUPPLY_LEVEL], max_rows=_MAX_ROWS)
    first = _first(table[oids.HR_PRINTER_STATUS])
    if first is None:
        raise SnmpMissing(f"{device.address} has no hrPrinterStatus ({oids.HR_PRINTER_STATUS}): is it a printer?")
    index, status_value = first
    status = integer(f"{oids.HR_PRINTER_STATUS}.{index}", status_value)
    state = table[oids.HR_PRINTER_ERROR_STATE].get(index)
    flags = error_flags(b"" if is_missing(state) else octets(f"{oids.HR_PRINTER_ERROR_STATE}.{index}", state))
    ready = status in _READY_STATUS and not any(flags[name] for name in _STOPPING)
    samples = [sample("printer_status", status), sample("printer_ready", ready)]
    samples += [sample("printer_error", on, error=name) for name, on in flags.items()]
    samples += supply_samples(table)
    faults = ", ".join(name for name, on in flags.items() if on) or "none"
    return ProbeResult(ok=True, samples=tuple(samples),
                       info={"status": PRINTER_STATUS.get(status, str(status)), "faults": faults})


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
        ERRORS_METRIC,
    ),
)
