"""Printers through snmpsim: report what is readable; Printer-MIB's negative levels are states.

RFC 3805 (Printer-MIB v2), prtMarkerSuppliesLevel: -1 "other" (the printer places
no restriction on it), -2 "unknown", -3 "some remaining" (supply, or space in a
waste receptacle, is there but not measured). The recordings are hand-written
(snmpsim-data has no printer): an HP with HOST-RESOURCES hrPrinterTable and a
Kyocera-like printer without it. Expected values come from the files.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from commune_agent.probes.printer import PrinterConfig
from commune_agent.snmp import oids
from commune_agent.snmp.settings import SnmpSettings
from testsupport.devices import close_resources, context, run_probe
from testsupport.peers.snmpsim import (
    DATA_DIR,
    LOCAL_DEVICES,
    RECORDED_DEVICES,
    SnmpsimPeer,
    read_snmprec,
    snmpsim_fixture,
)

printers = snmpsim_fixture(scope="module", name="printers", devices={
    "hp": LOCAL_DEVICES["printer"],
    "nohr": DATA_DIR / "printer-kyocera-nohr.snmprec",
    "router": RECORDED_DEVICES["switch"],
})


@pytest.fixture
async def resources() -> AsyncIterator[dict]:
    shared: dict = {}
    yield shared
    close_resources(shared)


def config(peer: SnmpsimPeer, role: str) -> PrinterConfig:
    return PrinterConfig(host="127.0.0.1", snmp=SnmpSettings(port=peer.port, community=peer.community(role)))


def supplies(peer: SnmpsimPeer, role: str) -> dict[str, tuple[int, int]]:
    """Description -> (level, max capacity), straight from the recording."""
    rows = {oid: value for oid, _, value in read_snmprec(peer.devices[role].data_file)}
    out = {}
    for oid, descr in rows.items():
        if oid.startswith(oids.PRT_SUPPLY_DESCRIPTION + "."):
            index = oid[len(oids.PRT_SUPPLY_DESCRIPTION) + 1:]
            out[descr] = (int(rows[f"{oids.PRT_SUPPLY_LEVEL}.{index}"]),
                          int(rows[f"{oids.PRT_SUPPLY_MAX_CAPACITY}.{index}"]))
    return out


async def test_without_hr_printer_status_the_readable_supplies_are_reported(printers: SnmpsimPeer,
                                                                            resources: dict) -> None:
    result = await run_probe(config(printers, "nohr"), context(resources))
    assert result.ok, result.reason  # the printer answers: it is up, its status is simply not reported
    assert result.value("printer_status") is None and result.value("printer_ready") is None
    assert "hrPrinterStatus" in result.info["status"]
    levels = supplies(printers, "nohr")
    assert {level for level, _ in levels.values()} >= {-1, -2, -3, 0}  # the recording covers every state
    for name, (level, capacity) in levels.items():
        ratio = result.value("printer_supply_level_ratio", supply=name)
        remaining = result.value("printer_supply_remaining", supply=name)
        if level >= 0 and capacity > 0:
            assert ratio == pytest.approx(level / capacity), name
        else:
            assert ratio is None, name  # no level is made up from a state
        if level == -3:
            assert remaining == 1, name  # "some remaining" is a state: known not empty
        elif level >= 0:
            assert remaining == (1 if level > 0 else 0), name
        else:  # -1 (no restriction) and -2 (unknown) say nothing about emptiness
            assert remaining is None, name
    assert "TK-1160 Black Toner: some remaining" in result.info["supplies"]
    assert "Fuser Unit: unknown" in result.info["supplies"]
    assert "Staples: not restricted" in result.info["supplies"]
    assert "Drum Unit DK-1150: 62%" in result.info["supplies"]
    assert "TK-1160 Spare Toner: empty" in result.info["supplies"]


async def test_some_remaining_is_kept_beside_the_printer_status(printers: SnmpsimPeer, resources: dict) -> None:
    result = await run_probe(config(printers, "hp"), context(resources))
    assert result.ok, result.reason
    assert result.value("printer_status") == 3 and result.value("printer_ready") == 1
    level, capacity = supplies(printers, "hp")["Toner Collection Unit HP 3WT90A"]
    assert (level, capacity) == (-3, -2)
    assert result.value("printer_supply_remaining", supply="Toner Collection Unit HP 3WT90A") == 1
    assert result.value("printer_supply_level_ratio", supply="Toner Collection Unit HP 3WT90A") is None
    assert result.value("printer_supply_remaining", supply="Magenta Cartridge HP W2033X") == 1
    assert result.value("printer_supply_level_ratio", supply="Magenta Cartridge HP W2033X") == 0.04


async def test_a_device_with_neither_printer_table_is_not_a_printer(printers: SnmpsimPeer, resources: dict) -> None:
    result = await run_probe(config(printers, "router"), context(resources))
    assert not result.ok
    assert "no hrPrinterStatus (1.3.6.1.2.1.25.3.5.1.1) and no Printer-MIB supplies" in result.reason
    assert result.value("snmp_errors_total", error="missing") == 1
