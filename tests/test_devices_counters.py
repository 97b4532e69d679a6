"""Interface counters across rounds, and bad replies, against snmpsim serving synthetic devices.

The served files are rewritten between (and during) rounds, so the agent sees
counters grow, wrap, reset and the device reboot exactly as a real switch
would show them over SNMP. The agent's monotonic clock is a fake the test
moves, so the expected rates are exact.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from commune_agent.app import Agent
from commune_agent.config import AgentConfig
from commune_agent.probes.snmp_interfaces import SnmpInterfacesConfig
from commune_agent.snmp.client import SnmpClient
from commune_agent.snmp.settings import SnmpSettings
from commune_common.yamlconf import parse_model
from testsupport.devices import (
    OCTETS,
    FakeClock,
    close_resources,
    context,
    interface_records,
    rewrite,
    run_probe,
    system_records,
)
from testsupport.peers.nut import NutPeer
from testsupport.peers.snmpsim import SnmpsimPeer, write_snmprec

UPTIME = 1_000_000  # ticks (hundredths of a second)
DEVICES = {
    "rates": system_records(UPTIME) + interface_records(4, in_octets=10_000, out_octets=20_000),
    "wrap32": system_records(UPTIME) + interface_records(2, in_octets=2**32 - 500, hc=False),
    "reset64": system_records(UPTIME) + interface_records(2, in_octets=10**12),
    "reboot": system_records(UPTIME) + interface_records(2, in_octets=5_000_000),
    "midwalk": system_records(UPTIME) + interface_records(300),
    "wrongtype": system_records(UPTIME) + interface_records(3, octet_type=OCTETS),
    "huge": system_records(UPTIME) + interface_records(2000, hc=False),
}


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SnmpsimPeer]:
    """snmpsim with one community per synthetic device (commune-test-<role>)."""
    source = tmp_path_factory.mktemp("snmprec")
    files = {role: write_snmprec(source / f"commune-test-{role}.snmprec", records)
             for role, records in DEVICES.items()}
    peer = SnmpsimPeer(devices=files)
    peer.start()
    try:
        yield peer
    finally:
        peer.stop()


@pytest.fixture
async def resources() -> AsyncIterator[dict]:
    shared: dict = {}
    yield shared
    close_resources(shared)


def config(sim: SnmpsimPeer, role: str, **kw: object) -> SnmpInterfacesConfig:
    snmp = {k: kw.pop(k) for k in ("max_repetitions", "timeout", "retries") if k in kw}
    return SnmpInterfacesConfig(host="127.0.0.1", snmp=SnmpSettings(port=sim.port, community=sim.community(role),
                                                                    **snmp), **kw)


def served(sim: SnmpsimPeer, role: str) -> Path:
    return sim.devices[role].data_file


async def test_rates_are_counter_deltas_over_elapsed_time(sim: SnmpsimPeer, resources: dict) -> None:
    clock, state = FakeClock(), {}
    rewrite(served(sim, "rates"), DEVICES["rates"])
    first = await run_probe(config(sim, "rates"), context(resources, state=state, clock=clock))
    assert first.ok, first.reason
    assert first.value("snmp_interface_receive_bytes_per_second", ifname="port1") is None  # no baseline yet
    rewrite(served(sim, "rates"), system_records(UPTIME + 1000)
            + interface_records(4, in_octets=10_000 + 125_000, out_octets=20_000 + 250_000))
    clock.advance(10.0)
    second = await run_probe(config(sim, "rates"), context(resources, state=state, clock=clock))
    assert second.ok, second.reason
    for port in ("port1", "port4"):
        assert second.value("snmp_interface_receive_bytes_per_second", ifname=port) == 125_000 / 10
        assert second.value("snmp_interface_transmit_bytes_per_second", ifname=port) == 250_000 / 10
    assert second.value("snmp_interface_receive_bytes_total", ifname="port2") == 135_000
    assert second.value("snmp_interface_speed_bytes_per_second", ifname="port1") == 100e6 / 8
    assert second.value("snmp_interface_receive_errors_total", ifname="port3") == 3
    assert (second.value("snmp_interfaces_admin_up"), second.value("snmp_interfaces_oper_up")) == (4, 2)


async def test_a_counter32_wrap_adds_2_to_the_32(sim: SnmpsimPeer, resources: dict) -> None:
    """No ifXTable: the 32-bit ifInOctets is used, and its wrap is not a negative rate."""
    clock, state = FakeClock(), {}
    rewrite(served(sim, "wrap32"), DEVICES["wrap32"])
    assert (await run_probe(config(sim, "wrap32"), context(resources, state=state, clock=clock))).ok
    rewrite(served(sim, "wrap32"), system_records(UPTIME + 1000) + interface_records(2, in_octets=500, hc=False))
    clock.advance(10.0)
    result = await run_probe(config(sim, "wrap32"), context(resources, state=state, clock=clock))
    assert result.value("snmp_interface_receive_bytes_total", ifname="port1") == 500
    assert result.value("snmp_interface_receive_bytes_per_second", ifname="port1") == 1000 / 10


async def test_a_counter_reset_without_reboot_gives_no_spike(sim: SnmpsimPeer, resources: dict) -> None:
    """A Counter64 that drops (cleared by an operator) would "wrap" to 2^64: implausible, so no rate."""
    clock, state = FakeClock(), {}
    rewrite(served(sim, "reset64"), DEVICES["reset64"])
    assert (await run_probe(config(sim, "reset64"), context(resources, state=state, clock=clock))).ok
    rewrite(served(sim, "reset64"), system_records(UPTIME + 1000) + interface_records(2, in_octets=10))
    clock.advance(10.0)
    result = await run_probe(config(sim, "reset64"), context(resources, state=state, clock=clock))
    assert result.ok
    assert result.value("snmp_interface_receive_bytes_total", ifname="port1") == 10
    assert result.value("snmp_interface_receive_bytes_per_second", ifname="port1") is None
    assert result.value("snmp_interface_transmit_bytes_per_second", ifname="port1") == 0  # unchanged: a real 0


async def test_a_reboot_between_rounds_restarts_the_baseline(sim: SnmpsimPeer, resources: dict) -> None:
    clock, state = FakeClock(), {}
    rewrite(served(sim, "reboot"), DEVICES["reboot"])
    assert (await run_probe(config(sim, "reboot"), context(resources, state=state, clock=clock))).ok
    rewrite(served(sim, "reboot"), system_records(3000) + interface_records(2, in_octets=1000))  # up 30 s
    clock.advance(60.0)
    after = await run_probe(config(sim, "reboot"), context(resources, state=state, clock=clock))
    assert after.ok
    assert after.value("snmp_interface_receive_bytes_per_second", ifname="port1") is None  # not a wrap
    assert "rebooted" in after.info["reboot"]
    rewrite(served(sim, "reboot"), system_records(3000 + 6000) + interface_records(2, in_octets=1000 + 7500))
    clock.advance(60.0)
    later = await run_probe(config(sim, "reboot"), context(resources, state=state, clock=clock))
    assert later.value("snmp_interface_receive_bytes_per_second", ifname="port1") == 7500 / 60


async def test_a_reboot_in_the_middle_of_a_walk_fails_the_round(sim: SnmpsimPeer, resources: dict) -> None:
    state: dict = {"last": {"uptime": UPTIME / 100, "at": 0.0, "counters": {}}}
    rewrite(served(sim, "midwalk"), DEVICES["midwalk"])
    ctx = context(resources, state=state, timeout=60.0)
    cfg = config(sim, "midwalk", max_repetitions=1)  # 300 rows, one per request: a long walk
    round_task = asyncio.create_task(run_probe(cfg, ctx, round_timeout=60.0))
    client: SnmpClient | None = None
    address = f"127.0.0.1:{sim.port}"
    async with asyncio.timeout(30):
        while client is None or client.requests.get(address, 0) < 3:  # sysUpTime, then the walk is under way
            assert not round_task.done(), (await round_task).reason
            client = resources.get("snmp")
            await asyncio.sleep(0.005)
    rewrite(served(sim, "midwalk"), system_records(200) + interface_records(300))  # rebooted: up 2 s
    result = await round_task
    assert not result.ok
    assert result.reason == (f"{address} rebooted during the walk (sysUpTime 10000s -> 2s); "
                             "its counters start again next round")
    assert result.value("snmp_errors_total", error="rebooted_mid_walk") == 1
    assert "last" not in state  # half-old, half-new counters never become a baseline
    assert client is not None and client.requests[address] > 100  # the rewrite landed early in the walk


async def test_a_counter_of_the_wrong_type_fails_the_round_naming_it(sim: SnmpsimPeer, resources: dict) -> None:
    result = await run_probe(config(sim, "wrongtype"), context(resources))
    assert not result.ok
    assert result.reason == ("1.3.6.1.2.1.31.1.1.1.6.1: expected Counter32 or Counter64, "
                             "the device answered OctetString")
    assert result.value("snmp_errors_total", error="wrong_type") == 1


async def test_a_huge_table_ends_the_round_at_max_rows(sim: SnmpsimPeer, resources: dict) -> None:
    address = f"127.0.0.1:{sim.port}"
    result = await run_probe(config(sim, "huge", max_rows=200), context(resources, timeout=60.0),
                             round_timeout=60.0)
    assert not result.ok
    assert result.reason == (f"{address} returned more than 200 rows in 1.3.6.1.2.1.2.2.1.2; "
                             "raise max_rows if the device really has that many")
    assert result.value("snmp_errors_total", error="too_many_rows") == 1
    # it stopped near the bound: snmpsim answers at most 64 variables per request, so reading all
    # 2000 rows of 12 columns takes at least 375 requests; reaching row 201 takes about 40
    assert resources["snmp"].requests[address] <= 60


# -- many devices at once: the bad ones never stop the good ones -------------------------------


async def test_bad_devices_never_stop_the_other_probes(sim: SnmpsimPeer, snmpsim: SnmpsimPeer,
                                                       nut_ups: NutPeer, tmp_path: Path) -> None:
    """One agent, one round of everything: a silent device, a wrong type, a huge table next to a
    real router, a UPS and NUT. Every good check succeeds; every bad one fails with its reason and
    shows in /metrics as commune_snmp_errors_total{error=...}."""
    def snmp(peer: SnmpsimPeer, community: str, extra: str = "") -> str:
        return f"{{port: {peer.port}, community: '{community}', timeout: 500ms, retries: 0{extra}}}"

    cfg = parse_model(AgentConfig, f"""\
site: {{id: test-site, province: ha-noi, commune: Xã Thử}}
agent: {{state_dir: {tmp_path / 'state'}}}
defaults: {{interval: 30s, timeout: 20s}}
host: {{enabled: false}}
devices:
  - {{name: router, kind: router, host: 127.0.0.1, snmp: {snmp(snmpsim, snmpsim.community('router'))}}}
  - {{name: silent, kind: switch, host: 127.0.0.1, snmp: {snmp(snmpsim, 'no-such-community')}}}
  - {{name: liar, kind: switch, host: 127.0.0.1, snmp: {snmp(sim, sim.community('wrongtype'))}}}
  - {{name: flood, kind: switch, host: 127.0.0.1, snmp: {snmp(sim, sim.community('huge'))},
     interfaces: {{max_rows: 100}}}}
power:
  - {{name: eaton, source: snmp, host: 127.0.0.1, snmp: {snmp(snmpsim, snmpsim.community('ups'))}}}
  - {{name: nut, source: nut, port: {nut_ups.port}, ups: {nut_ups.ups_name}}}
""", "agent.yaml")
    agent = Agent(cfg)
    results = {check.id: result for check, result in await agent.probe_once()}
    good = ["device/router/snmp_system", "device/router/snmp_interfaces", "device/liar/snmp_system",
            "device/flood/snmp_system", "power/eaton", "power/nut"]
    assert {c: results[c].reason for c in good if not results[c].ok} == {}
    bad = {"device/silent/snmp_system": "timeout", "device/silent/snmp_interfaces": "timeout",
           "device/liar/snmp_interfaces": "wrong_type", "device/flood/snmp_interfaces": "too_many_rows"}
    assert {c: results[c].ok for c in bad} == dict.fromkeys(bad, False)
    assert results["device/router/snmp_interfaces"].value("snmp_interfaces_selected") == 61

    exposed = {}
    for family in text_string_to_metric_families(generate_latest(agent.registry).decode()):
        for s in family.samples:
            if s.name == "commune_snmp_errors_total" and s.value:
                exposed[s.labels["check"]] = s.labels["error"]
            if s.name == "commune_probe_success":
                assert s.value == (s.labels["check"] not in bad), s.labels["check"]
    assert exposed == bad
