"""What an installer sees: ``commune-agent probe-once`` and /metrics with devices and power, against
real snmpd and upsd; credentials from files never show in output, reasons or metrics; the
exposition passes ``promtool check metrics``."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from prometheus_client import generate_latest

from commune_agent.app import Agent
from commune_agent.config import load_agent_config
from testsupport.peers._base import require_binary
from testsupport.peers.nut import NutPeer
from testsupport.peers.snmpd import SnmpdPeer

ROOT = Path(__file__).resolve().parents[1]


def _write_site(tmp_path: Path, snmpd: SnmpdPeer, nut: NutPeer) -> tuple[Path, list[str]]:
    """A site with a v2c and a v3 device, a v3 device with a wrong key, and a NUT UPS with login."""
    secrets = {"community": snmpd.community, "auth": snmpd.user_sha.auth_key, "priv": snmpd.user_sha.priv_key,
               "nut": nut.admin_password, "wrong": "wrong-auth-key-4242"}
    for name, value in secrets.items():
        (tmp_path / name).write_text(value + "\n")
        (tmp_path / name).chmod(0o600)
    user = snmpd.user_sha.name
    config = tmp_path / "agent.yaml"
    config.write_text(f"""\
site: {{id: test-site, province: ha-noi, commune: Xã Thử}}
agent: {{state_dir: {tmp_path / 'state'}}}
defaults: {{interval: 30s, timeout: 8s}}
host: {{enabled: false}}
devices:
  - name: core
    kind: switch
    host: 127.0.0.1
    snmp: {{port: {snmpd.port}, community_file: {tmp_path / 'community'}}}
  - name: core-v3
    kind: snmp
    host: 127.0.0.1
    snmp: {{version: 3, port: {snmpd.port}, user: {user}, auth_key_file: {tmp_path / 'auth'},
            priv_key_file: {tmp_path / 'priv'}}}
  - name: wrong-key
    kind: snmp
    host: 127.0.0.1
    required: false
    snmp: {{version: 3, port: {snmpd.port}, user: {user}, auth_key_file: {tmp_path / 'wrong'},
            priv_key_file: {tmp_path / 'priv'}, timeout: 1s, retries: 0}}
power:
  - {{name: main-ups, source: nut, port: {nut.port}, ups: {nut.ups_name}, username: {nut.admin_user},
     password_file: {tmp_path / 'nut'}}}
""")
    return config, list(secrets.values())


def _probe_once(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "commune_agent.cli", "probe-once", "--config", str(config), *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_probe_once_shows_devices_and_power_and_no_secret(snmpd: SnmpdPeer, nut_ups: NutPeer,
                                                          tmp_path: Path) -> None:
    config, secrets = _write_site(tmp_path, snmpd, nut_ups)
    proc = _probe_once(config, "--json")
    assert proc.returncode == 1, proc.stderr  # the wrong-key device fails, so the site is not all ok
    report = {c["check"]: c for c in json.loads(proc.stdout)["checks"]}
    assert {c: r["ok"] for c, r in report.items()} == {
        "device/core/snmp_system": True, "device/core/snmp_interfaces": True, "device/core-v3/snmp_system": True,
        "device/wrong-key/snmp_system": False, "power/main-ups": True}
    assert report["device/core/snmp_system"]["info"]["sysName"] == snmpd.sys_name
    assert report["device/core/snmp_interfaces"]["values"]["snmp_interfaces_selected"] >= 1
    assert report["power/main-ups"]["values"]["power_on_battery"] == 0
    assert report["device/wrong-key/snmp_system"]["labels"]["required"] == "false"
    assert "refused" in report["device/wrong-key/snmp_system"]["reason"]
    assert report["device/wrong-key/snmp_system"]["values"]['snmp_errors_total{error="auth"}'] == 1

    table = _probe_once(config)
    lines = {line.split()[0]: line for line in table.stdout.splitlines() if line.startswith(("device/", "power/"))}
    assert " up, of " in lines["device/core/snmp_interfaces"] and " enabled" in lines["device/core/snmp_interfaces"]
    assert "on_battery=0, charge 100%, runtime 60min" in lines["power/main-ups"]
    assert "FAIL" in lines["device/wrong-key/snmp_system"] and "refused" in lines["device/wrong-key/snmp_system"]
    assert "4/5 checks ok, 1 failed" in table.stdout
    for output in (proc.stdout, proc.stderr, table.stdout, table.stderr):
        for secret in secrets:
            assert secret not in output


def test_metrics_carry_no_secret(snmpd: SnmpdPeer, nut_ups: NutPeer, tmp_path: Path) -> None:
    config, secrets = _write_site(tmp_path, snmpd, nut_ups)
    agent = Agent(load_agent_config(config))
    results = asyncio.run(agent.probe_once())
    assert len(results) == 5
    exposition = generate_latest(agent.registry).decode()
    assert 'commune_snmp_system_info{' in exposition and "commune_power_on_battery{" in exposition
    for secret in secrets:
        assert secret not in exposition
    lint = subprocess.run([require_binary("promtool"), "check", "metrics"], input=exposition.encode(),
                          capture_output=True, timeout=30)
    assert lint.returncode == 0 and not lint.stdout.strip() and not lint.stderr.strip(), lint.stderr.decode()
