"""Device probes against snmpsim serving recordings of real devices (and a hand-written printer).

Expected values are read straight from the recording files, never through the
agent's SNMP code, so a decoding bug cannot agree with itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from commune_agent.probes.printer import PrinterConfig
from commune_agent.probes.snmp_get import OidMetric, SnmpGetConfig
from commune_agent.probes.snmp_interfaces import SnmpInterfacesConfig
from commune_agent.probes.snmp_system import SnmpSystemConfig
from commune_agent.snmp.settings import SnmpSettings
from testsupport.devices import close_resources, context, run_probe
from testsupport.peers.snmpsim import SnmpsimPeer, read_snmprec


@pytest.fixture
async def resources() -> AsyncIterator[dict]:
    shared: dict = {}
    yield shared
    close_resources(shared)


def settings(peer: SnmpsimPeer, role: str, **kw: object) -> SnmpSettings:
    return SnmpSettings(port=peer.port, community=peer.community(role), **kw)


def recorded(peer: SnmpsimPeer, role: str) -> dict[str, str]:
    """OID -> value as the recording holds it; hex-encoded strings (tag ``4x``) decoded."""
    return {oid: bytes.fromhex(value).decode("utf-8", "replace") if tag.endswith("x") else value
            for oid, tag, value in read_snmprec(peer.devices[role].data_file)}


def column(records: dict[str, str], col: str) -> dict[str, str]:
    return {oid[len(col) + 1:]: v for oid, v in records.items() if oid.startswith(col + ".")}


async def test_snmp_system_reads_name_uptime_and_descr(snmpsim: SnmpsimPeer, resources: dict) -> None:
    rec = recorded(snmpsim, "router")
    result = await run_probe(SnmpSystemConfig(host="127.0.0.1", snmp=settings(snmpsim, "router")), context(resources))
    assert result.ok, result.reason
    assert result.info["sysName"] == rec["1.3.6.1.2.1.1.5.0"]
    assert result.value("snmp_system_uptime_seconds") == int(rec["1.3.6.1.2.1.1.3.0"]) / 100
    assert result.value("snmp_system_reboots_total") == 0
    assert result.info["sysDescr"] == rec["1.3.6.1.2.1.1.1.0"]


async def test_router_interfaces_match_the_recording(snmpsim: SnmpsimPeer, resources: dict) -> None:
    rec = recorded(snmpsim, "router")
    names = column(rec, "1.3.6.1.2.1.31.1.1.1.1")
    admin = column(rec, "1.3.6.1.2.1.2.2.1.7")
    oper = column(rec, "1.3.6.1.2.1.2.2.1.8")
    hc_in = column(rec, "1.3.6.1.2.1.31.1.1.1.6")
    result = await run_probe(SnmpInterfacesConfig(host="127.0.0.1", snmp=settings(snmpsim, "router")),
                             context(resources))
    assert result.ok, result.reason
    assert result.value("snmp_interfaces_selected") == len(column(rec, "1.3.6.1.2.1.2.2.1.1")) == 61
    admin_up = [i for i, v in admin.items() if v == "1"]
    assert result.value("snmp_interfaces_admin_up") == len(admin_up)
    assert result.value("snmp_interfaces_oper_up") == sum(1 for i in admin_up if oper.get(i) == "1")
    for index, name in list(names.items())[:10]:
        assert result.value("snmp_interface_receive_bytes_total", ifname=name) == int(hc_in[index])
        assert result.value("snmp_interface_oper_up", ifname=name) == (oper[index] == "1")
    # the first round has no earlier counters: no made-up rate
    assert not [s for s in result.samples if s.name.endswith("_bytes_per_second") and "speed" not in s.name]


async def test_interfaces_selected_by_anchored_regexes(snmpsim: SnmpsimPeer, resources: dict) -> None:
    rec = recorded(snmpsim, "router")
    names = set(column(rec, "1.3.6.1.2.1.31.1.1.1.1").values())
    want = {n for n in names if n.startswith("ge-")} - {n for n in names if n.endswith(".0")}
    assert want, "the recording should have ge- interfaces"
    cfg = SnmpInterfacesConfig(host="127.0.0.1", snmp=settings(snmpsim, "router"), include=["ge-.*"],
                               exclude=[r".*\.0"])
    result = await run_probe(cfg, context(resources))
    got = {dict(s.labels)["ifname"] for s in result.samples if s.name == "snmp_interface_oper_up"}
    assert got == want
    assert result.value("snmp_interfaces_selected") == len(want)


async def test_printer_status_faults_and_supplies(snmpsim: SnmpsimPeer, resources: dict) -> None:
    result = await run_probe(PrinterConfig(host="127.0.0.1", snmp=settings(snmpsim, "printer")), context(resources))
    assert result.ok, result.reason
    assert result.value("printer_status") == 3 and result.info["status"] == "idle"
    assert result.value("printer_error", error="low_toner") == 1  # error state 0x20: bit 2
    assert result.value("printer_error", error="jammed") == 0
    assert result.value("printer_ready") == 1  # low toner does not stop printing
    assert result.value("printer_supply_level_ratio", supply="Magenta Cartridge HP W2033X") == 0.04
    assert result.value("printer_supply_level_ratio", supply="Black Cartridge HP W2030X") == 0.38
    # the waste unit reports capacity -2 (unknown) and level -3 (some left): no ratio is made up, the state is kept
    assert result.value("printer_supply_level_ratio", supply="Toner Collection Unit HP 3WT90A") is None
    assert result.value("printer_supply_remaining", supply="Toner Collection Unit HP 3WT90A") == 1


async def test_a_router_is_not_a_printer(snmpsim: SnmpsimPeer, resources: dict) -> None:
    result = await run_probe(PrinterConfig(host="127.0.0.1", snmp=settings(snmpsim, "router")), context(resources))
    assert not result.ok
    assert "has no hrPrinterStatus (1.3.6.1.2.1.25.3.5.1.1) and no Printer-MIB supplies" in result.reason
    assert result.value("snmp_errors_total", error="missing") == 1


async def test_user_oids_become_metrics_and_missing_ones_are_named(snmpsim: SnmpsimPeer, resources: dict) -> None:
    rec = recorded(snmpsim, "switch")
    cfg = SnmpGetConfig(host="127.0.0.1", snmp=settings(snmpsim, "switch"), get=[
        OidMetric(oid="1.3.6.1.2.1.1.7.0", name="cisco_services", labels={"layer": "all"}),
        OidMetric(oid=".1.3.6.1.2.1.1.3.0", name="cisco_uptime_seconds", scale=0.01),
        OidMetric(oid="1.3.6.1.2.1.1.5.0", name="cisco_name", type="text"),
    ])
    result = await run_probe(cfg, context(resources))
    assert result.ok, result.reason
    assert result.value("cisco_services", layer="all") == int(rec["1.3.6.1.2.1.1.7.0"])
    assert result.value("cisco_uptime_seconds") == pytest.approx(int(rec["1.3.6.1.2.1.1.3.0"]) / 100)
    assert result.info["cisco_name"] == rec["1.3.6.1.2.1.1.5.0"]

    missing = cfg.model_copy(update={"get": [*cfg.get, OidMetric(oid="1.3.6.1.4.1.99999.1.0", name="vendor_x")]})
    ctx = context(resources)
    result = await run_probe(missing, ctx)
    assert not result.ok
    assert result.reason == f"127.0.0.1:{snmpsim.port} has no value at 1.3.6.1.4.1.99999.1.0"
    assert result.value("cisco_services", layer="all") == int(rec["1.3.6.1.2.1.1.7.0"])  # what was there is kept
    assert result.value("snmp_errors_total", error="missing") == 1


async def test_unknown_community_is_silence_then_a_counted_timeout(snmpsim: SnmpsimPeer, resources: dict) -> None:
    cfg = SnmpSystemConfig(host="127.0.0.1", snmp=SnmpSettings(port=snmpsim.port, community="no-such-device",
                                                               timeout="300ms", retries=1))
    ctx = context(resources)
    first = await run_probe(cfg, ctx)
    second = await run_probe(cfg, ctx)
    assert not first.ok and not second.ok
    assert second.reason == f"no SNMP reply from 127.0.0.1:{snmpsim.port} to GET within 0.3s x 2 tries"
    assert second.value("snmp_errors_total", error="timeout") == 2
    assert "no-such-device" not in second.reason
