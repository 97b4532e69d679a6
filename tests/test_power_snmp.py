"""UPS over SNMP: UPS-MIB (RFC 1628) against a recorded Eaton 93E, PowerNet-MIB against an APC
Smart-UPS recording, both also switched onto battery, all normalized to the same power view."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pysnmp.proto import rfc1902

from commune_agent.probes.ups_apc import UpsApcConfig
from commune_agent.probes.ups_snmp import UpsSnmpConfig
from commune_agent.probes.ups_snmp import reading_from as ups_mib_reading
from commune_agent.snmp import oids
from commune_agent.snmp.errors import SnmpTypeError
from commune_agent.snmp.settings import SnmpSettings
from testsupport.devices import GAUGE32, INTEGER, OID, TIMETICKS, context, run_probe
from testsupport.peers.snmpsim import LOCAL_DEVICES, SnmpsimPeer, read_snmprec, snmprec_variant


def snmp(peer: SnmpsimPeer, role: str) -> SnmpSettings:
    return SnmpSettings(port=peer.port, community=peer.community(role))


def recorded(path: Path) -> dict[str, str]:
    return {oid: value for oid, _, value in read_snmprec(path)}


@pytest.fixture(scope="module")
def on_battery(snmpsim: SnmpsimPeer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SnmpsimPeer]:
    """The same two UPS recordings, changed as they read during a power cut."""
    tmp = tmp_path_factory.mktemp("onbatt")
    eaton = snmprec_variant(snmpsim.devices["ups"].data_file, tmp / "commune-test-eaton-onbatt.snmprec", {
        oids.UPS_OUTPUT_SOURCE: (INTEGER, 5),  # battery
        oids.UPS_BATTERY_STATUS: (INTEGER, 3),  # batteryLow
        oids.UPS_SECONDS_ON_BATTERY: (INTEGER, 420),
        oids.UPS_MINUTES_REMAINING: (INTEGER, 4),
        oids.UPS_CHARGE_REMAINING: (INTEGER, 12),
        oids.UPS_INPUT_VOLTAGE + ".1": (INTEGER, 0),
        oids.UPS_ALARMS_PRESENT: (GAUGE32, 2),
        oids.UPS_ALARM_DESCR + ".1": (OID, "1.3.6.1.2.1.33.1.6.3.2"),  # upsAlarmOnBattery
        "1.3.6.1.2.1.33.1.6.2.1.3.1": (TIMETICKS, 100),
        oids.UPS_ALARM_DESCR + ".2": (OID, oids.UPS_ALARM_BATTERY_BAD),
        "1.3.6.1.2.1.33.1.6.2.1.3.2": (TIMETICKS, 200),
    })
    apc = snmprec_variant(LOCAL_DEVICES["apc_ups"], tmp / "commune-test-apc-onbatt.snmprec", {
        oids.APC_BASIC_OUTPUT_STATUS: (INTEGER, 3),  # onBattery
        oids.APC_BASIC_BATTERY_STATUS: (INTEGER, 3),  # batteryLow
        oids.APC_ADV_BATTERY_RUNTIME: (TIMETICKS, 30000),  # 300 s
        oids.APC_HIGHPREC_BATTERY_CAPACITY: (GAUGE32, 87),  # 8.7 %
        oids.APC_ADV_BATTERY_REPLACE: (INTEGER, 2),  # batteryNeedsReplacing
    })
    peer = SnmpsimPeer(devices={"eaton": eaton, "apc": apc})
    peer.start()
    try:
        yield peer
    finally:
        peer.stop()


async def test_ups_mib_on_mains_matches_the_recording(snmpsim: SnmpsimPeer) -> None:
    rec = recorded(snmpsim.devices["ups"].data_file)
    result = await run_probe(UpsSnmpConfig(name="main-ups", source="snmp", host="127.0.0.1",
                                           snmp=snmp(snmpsim, "ups")), context({}))
    assert result.ok, result.reason
    assert result.value("power_on_battery") == (rec[oids.UPS_OUTPUT_SOURCE] == "5") == 0
    assert result.value("power_battery_runtime_seconds") == int(rec[oids.UPS_MINUTES_REMAINING]) * 60  # minutes!
    assert result.value("power_battery_charge_ratio") == int(rec[oids.UPS_CHARGE_REMAINING]) / 100
    assert result.value("power_input_voltage_volts") == int(rec[oids.UPS_INPUT_VOLTAGE + ".1"])
    loads = [int(v) for o, v in rec.items() if o.startswith(oids.UPS_OUTPUT_PERCENT_LOAD + ".")]
    assert result.value("power_load_ratio") == max(loads) / 100
    assert result.value("power_replace_battery") == 0  # upsAlarmsPresent is 0: known, not unknown
    assert result.info["status"] == "normal"


async def test_ups_mib_during_a_power_cut(on_battery: SnmpsimPeer) -> None:
    result = await run_probe(UpsSnmpConfig(name="main-ups", source="snmp", host="127.0.0.1",
                                           snmp=snmp(on_battery, "eaton")), context({}))
    assert result.ok, result.reason
    assert result.value("power_on_battery") == 1
    assert result.value("power_low_battery") == 1
    assert result.value("power_replace_battery") == 1  # upsAlarmBatteryBad is in the alarm table
    assert result.value("power_battery_runtime_seconds") == 240
    assert result.value("power_battery_charge_ratio") == 0.12
    assert result.value("power_input_voltage_volts") == 0


async def test_apc_powernet_on_line(snmpsim: SnmpsimPeer) -> None:
    rec = recorded(snmpsim.devices["apc_ups"].data_file)
    result = await run_probe(UpsApcConfig(name="apc", source="apc", host="127.0.0.1",
                                          snmp=snmp(snmpsim, "apc_ups")), context({}))
    assert result.ok, result.reason
    assert result.info["status"] == "onLine"
    assert result.value("power_on_battery") == 0
    assert result.value("power_battery_runtime_seconds") == int(rec[oids.APC_ADV_BATTERY_RUNTIME]) / 100  # ticks
    assert result.value("power_battery_charge_ratio") == int(rec[oids.APC_HIGHPREC_BATTERY_CAPACITY]) / 1000
    assert result.value("power_input_voltage_volts") == int(rec[oids.APC_HIGHPREC_INPUT_VOLTAGE]) / 10
    assert (result.value("power_low_battery"), result.value("power_replace_battery")) == (0, 0)


async def test_apc_powernet_on_battery(on_battery: SnmpsimPeer) -> None:
    result = await run_probe(UpsApcConfig(name="apc", source="apc", host="127.0.0.1",
                                          snmp=snmp(on_battery, "apc")), context({}))
    assert result.ok, result.reason
    assert result.info["status"] == "onBattery"
    assert [result.value(n) for n in ("power_on_battery", "power_low_battery", "power_replace_battery")] == [1, 1, 1]
    assert result.value("power_battery_runtime_seconds") == 300
    assert result.value("power_battery_charge_ratio") == pytest.approx(0.087)


async def test_an_apc_pdu_is_not_a_ups(snmpsim: SnmpsimPeer) -> None:
    result = await run_probe(UpsApcConfig(name="pdu", source="apc", host="127.0.0.1",
                                          snmp=snmp(snmpsim, "apc_pdu")), context({}))
    assert not result.ok
    assert result.reason.endswith("has no upsBasicOutputStatus (1.3.6.1.4.1.318.1.1.1.4.1.1.0): "
                                  "is this an APC UPS (not a PDU)?")
    assert result.value("snmp_errors_total", error="missing") == 1


async def test_a_switch_is_not_a_ups_mib_agent(snmpsim: SnmpsimPeer) -> None:
    result = await run_probe(UpsSnmpConfig(name="x", source="snmp", host="127.0.0.1",
                                           snmp=snmp(snmpsim, "switch")), context({}))
    assert not result.ok
    assert "reports neither upsOutputSource nor upsSecondsOnBattery" in result.reason


def test_ups_mib_mapping_without_output_source_and_with_a_depleted_battery() -> None:
    empty = {oids.UPS_INPUT_VOLTAGE: {}, oids.UPS_OUTPUT_PERCENT_LOAD: {}, oids.UPS_ALARM_DESCR: {}}
    got = {oids.UPS_SECONDS_ON_BATTERY: rfc1902.Integer32(35), oids.UPS_BATTERY_STATUS: rfc1902.Integer32(4),
           oids.UPS_MINUTES_REMAINING: rfc1902.Integer32(0)}
    reading = ups_mib_reading(got, empty, "ups:161")
    assert reading.on_battery and reading.low_battery  # batteryDepleted counts as low
    assert reading.runtime_seconds == 0 and reading.replace_battery is None  # no alarm info: unknown, not "no"
    with pytest.raises(SnmpTypeError) as caught:
        ups_mib_reading({oids.UPS_OUTPUT_SOURCE: rfc1902.OctetString(b"3")}, empty, "ups:161")
    assert str(caught.value) == "1.3.6.1.2.1.33.1.4.1.0: expected an integer, the device answered OctetString"
