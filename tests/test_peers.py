"""Smoke tests for the real-peer harness in testsupport/peers.

One test per peer: start it, make one real query through its own protocol,
stop it, and prove the port is released and the processes are gone.  Plus
the two behaviours the whole harness relies on: missing binaries skip (or
fail under CI), and a peer that never gets ready fails fast with its log.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from testsupport.peers import (
    LOCAL_DEVICES,
    AlertmanagerPeer,
    BlackboxExporterPeer,
    NutPeer,
    Peer,
    PeerStartError,
    PostgresPeer,
    PrometheusPeer,
    SnmpdPeer,
    SnmpExporterPeer,
    SnmpsimPeer,
    alertmanager_fixture,
    if_mib_config,
    promtool_path,
    require_binary,
    snmprec_variant,
    tcp_port_listening,
    udp_port_bound,
)
from testsupport.peers._base import run_tool

UPS_CHARGE = "1.3.6.1.2.1.33.1.2.4.0"  # UPS-MIB upsEstimatedChargeRemaining
PRT_SUPPLY_LEVEL_MAGENTA = "1.3.6.1.2.1.43.11.1.1.9.1.3"  # prtMarkerSuppliesLevel
APC_OUTPUT_STATUS = "1.3.6.1.4.1.318.1.1.1.4.1.1.0"  # upsBasicOutputStatus
APC_BATTERY_CAPACITY = "1.3.6.1.4.1.318.1.1.1.2.2.1.0"  # upsAdvBatteryCapacity
SYS_OBJECT_ID = "1.3.6.1.2.1.1.2.0"


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def assert_stopped(peer: Peer, port: int, *, udp: bool = False) -> None:
    """The peer's processes are gone, its port is free and its temp dir removed."""
    assert all(_pid_gone(pid) for pid in peer.pids)
    assert not (udp_port_bound(port) if udp else tcp_port_listening(port))
    assert not peer.dir.exists()


# -- harness behaviour --------------------------------------------------------


def test_require_binary_skips_locally_and_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    assert require_binary(sys.executable) == sys.executable
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        require_binary("no-such-binary-commune-monitor")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception):
        require_binary("no-such-binary-commune-monitor")


class _NeverReady(Peer):
    """Stays alive but never answers: readiness must time out and show the log."""

    name = "never-ready"
    ready_timeout = 0.5

    def _launch(self) -> None:
        self._spawn(["sh", "-c", "echo marker-from-peer-log; exec sleep 60"])

    def _is_ready(self) -> bool:
        return False


class _DiesAtStart(_NeverReady):
    """Exits at once: the harness must notice without waiting for the deadline."""

    name = "dies-at-start"
    ready_timeout = 30.0

    def _launch(self) -> None:
        self._spawn(["sh", "-c", "echo bind: address already in use; exit 3"])


def test_readiness_timeout_reports_log_tail_and_kills_process() -> None:
    peer = _NeverReady()
    with pytest.raises(PeerStartError, match="marker-from-peer-log") as info:
        peer.start()
    assert "timed out" in str(info.value)
    assert all(_pid_gone(pid) for pid in peer.pids)


def test_early_exit_fails_fast_after_retries() -> None:
    peer = _DiesAtStart()
    with pytest.raises(PeerStartError, match="address already in use") as info:
        peer.start()
    assert "exited during start-up" in str(info.value)


# -- one smoke test per peer --------------------------------------------------


def test_snmpd_answers_v2c_and_v3() -> None:
    with SnmpdPeer() as snmpd:
        port = snmpd.port
        assert snmpd.get("1.3.6.1.2.1.1.5.0") == "ci-snmpd"
        for user in snmpd.v3_users:
            assert snmpd.get("1.3.6.1.2.1.1.5.0", user=user) == "ci-snmpd"
        assert snmpd.user_sha256 is not None, "Net-SNMP 5.9 on Debian 12 supports SHA-256"
    assert_stopped(snmpd, port, udp=True)


def test_snmpsim_serves_recordings_and_local_files() -> None:
    with SnmpsimPeer() as sim:
        port = sim.port
        assert sim.get("ups", UPS_CHARGE) == "100"
        assert sim.devices["router"].if_count == 61
        assert sim.community("router") == "network/router/juniper-mx960-13-3r9-13"
        assert sim.get("printer", PRT_SUPPLY_LEVEL_MAGENTA) == "4"
        assert sim.get("apc_ups", APC_BATTERY_CAPACITY) == "100"
        assert sim.get("apc_pdu", SYS_OBJECT_ID).startswith("iso.3.6.1.4.1.318.")
    assert_stopped(sim, port, udp=True)


def test_snmpsim_variant_of_a_local_device(tmp_path: Path) -> None:
    onbatt = snmprec_variant(
        LOCAL_DEVICES["apc_ups"],
        tmp_path / "apc-smart-ups-onbatt.snmprec",
        {APC_OUTPUT_STATUS: (2, 3), APC_BATTERY_CAPACITY: (66, 41)},
    )
    with SnmpsimPeer(devices={"apc_onbatt": onbatt}) as sim:
        assert sim.community("apc_onbatt") == "apc-smart-ups-onbatt"
        assert sim.get("apc_onbatt", APC_OUTPUT_STATUS) == "3"
        assert sim.get("apc_onbatt", APC_BATTERY_CAPACITY) == "41"


def test_nut_state_changes_live() -> None:
    with NutPeer() as nut:
        port = nut.port
        assert nut.get("ups.status") == "OL"
        nut.set_status("OB DISCHRG")  # upsrw through upsd, waits for upsc
        assert nut.get("ups.status") == "OB DISCHRG"
        nut.set_var("battery.charge.low", 20)  # unknown to the driver: .dev rewrite
        assert nut.get("battery.charge.low") == "20"
        assert nut.get("ups.status") == "OB DISCHRG"
    assert_stopped(nut, port)


def test_prometheus_scrapes_and_answers_queries() -> None:
    with PrometheusPeer(remote_write_receiver=True) as prom:
        port = prom.port
        result = prom.wait_for_query("up == 1", timeout=20)
        assert result[0]["metric"]["job"] == "prometheus"
    assert_stopped(prom, port)
    version = run_tool([promtool_path(), "--version"])
    assert "promtool" in version.stdout + version.stderr


def test_alertmanager_accepts_and_lists_alerts() -> None:
    with AlertmanagerPeer() as am:
        port = am.port
        am.post_alerts([{"labels": {"alertname": "UpsOnBattery", "site": "test"}}])
        assert am.wait_for_alert("UpsOnBattery", timeout=10)["labels"]["site"] == "test"
    assert_stopped(am, port)


def test_postgres_password_login_over_tcp() -> None:
    with PostgresPeer() as pg:
        port = pg.port
        out = run_tool(["psql", pg.dsn, "-tAc", "SELECT current_user, current_database()"])
        assert out.stdout.strip() == f"{pg.user}|{pg.dbname}"
        assert pg.dsn.startswith(f"postgresql://{pg.user}:{pg.password}@127.0.0.1:{port}/")
    assert_stopped(pg, port)


def test_blackbox_exporter_probes() -> None:
    with BlackboxExporterPeer() as bb:
        port = bb.port
        assert "probe_success 1" in bb.probe("tcp_connect", f"127.0.0.1:{port}")
    assert_stopped(bb, port)


def test_snmp_exporter_walks_snmpd() -> None:
    with SnmpdPeer() as snmpd, SnmpExporterPeer(if_mib_config(snmpd.community)) as exporter:
        port = exporter.port
        text = exporter.scrape(snmpd.address)
        assert 'ifHCInOctets{ifDescr="lo"' in text
    assert_stopped(exporter, port)


am_from_factory = alertmanager_fixture(scope="function")


def test_fixture_factory_starts_and_stops(am_from_factory: AlertmanagerPeer) -> None:
    assert am_from_factory.running
    assert am_from_factory.alerts() == []
