"""Power through Network UPS Tools: the protocol client and the ups_nut probe against real upsd
with the dummy-ups driver, a running agent's /metrics following the UPS onto battery, and upsd
replies that break the protocol."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from commune_agent.power.nut import MAX_VARS, NutClient, NutError, parse_var_line
from commune_agent.probes.ups_nut import UpsNutConfig, reading_from
from testsupport.devices import context, run_probe
from testsupport.peers._base import free_tcp_port, http_get, wait_until
from testsupport.peers.nut import NutPeer

ROOT = Path(__file__).resolve().parents[1]


def nut_config(peer: NutPeer, **kw: object) -> UpsNutConfig:
    return UpsNutConfig(name="main-ups", source="nut", port=peer.port, ups=peer.ups_name, **kw)


@pytest.fixture
def nut(nut_ups: NutPeer) -> Iterator[NutPeer]:
    """The session upsd, put back as it was after tests that change the UPS."""
    try:
        yield nut_ups
    finally:
        nut_ups.reset()


def test_var_lines_are_parsed_with_their_quoting() -> None:
    assert parse_var_line('VAR ups1 ups.model "Smart \\"UPS\\" 1500 \\\\ x"', "ups1") == (
        "ups.model", 'Smart "UPS" 1500 \\ x')
    assert parse_var_line('VAR ups1 battery.charge "100"', "ups1") == ("battery.charge", "100")
    with pytest.raises(NutError, match="unexpected line from upsd"):
        parse_var_line('VAR other battery.charge "100"', "ups1")
    with pytest.raises(NutError, match="unreadable line from upsd"):
        parse_var_line('VAR ups1 battery.charge "100', "ups1")


def test_status_tokens_map_to_the_normalized_view() -> None:
    reading = reading_from({"ups.status": "OB DISCHRG LB RB", "battery.charge": "18", "battery.runtime": "240",
                            "input.voltage": "0.0", "ups.load": "41"}, "ups1")
    assert (reading.on_battery, reading.low_battery, reading.replace_battery) == (True, True, True)
    assert (reading.charge_ratio, reading.runtime_seconds, reading.load_ratio) == (0.18, 240.0, 0.41)
    assert reading_from({"ups.status": "OL CHRG"}, "u").on_battery is False
    with pytest.raises(NutError, match="upsd reports no ups.status for u: is its driver running"):
        reading_from({"battery.charge": "100"}, "u")
    with pytest.raises(NutError, match="NUT variable battery.charge is not a number: 'full'"):
        reading_from({"ups.status": "OL", "battery.charge": "full"}, "u")


async def test_reading_from_upsd_matches_upsc(nut_ups: NutPeer) -> None:
    expected = nut_ups.get_all()
    result = await run_probe(nut_config(nut_ups), context({}))
    assert result.ok, result.reason
    assert result.value("power_on_battery") == 0
    assert result.value("power_battery_charge_ratio") == float(expected["battery.charge"]) / 100
    assert result.value("power_battery_runtime_seconds") == float(expected["battery.runtime"])
    assert result.value("power_input_voltage_volts") == float(expected["input.voltage"])
    assert result.value("power_load_ratio") == float(expected["ups.load"]) / 100
    assert (result.value("power_low_battery"), result.value("power_replace_battery")) == (0, 0)
    assert result.info["status"] == expected["ups.status"]


async def test_on_battery_low_and_replace_flags_follow_the_ups(nut: NutPeer) -> None:
    nut.set_vars({"ups.status": "OB DISCHRG LB RB", "battery.charge": "9", "battery.runtime": "95"})
    result = await run_probe(nut_config(nut), context({}))
    assert result.ok, result.reason  # on battery is a value, not a failed round
    assert [result.value(n) for n in ("power_on_battery", "power_low_battery", "power_replace_battery")] == [1, 1, 1]
    assert (result.value("power_battery_charge_ratio"), result.value("power_battery_runtime_seconds")) == (0.09, 95)


async def test_login_with_a_password_file(nut_ups: NutPeer, tmp_path: Path) -> None:
    secret = tmp_path / "nut-password"
    secret.write_text(nut_ups.admin_password + "\n")
    result = await run_probe(nut_config(nut_ups, username=nut_ups.admin_user, password_file=secret), context({}))
    assert result.ok, result.reason
    assert nut_ups.admin_password not in repr(nut_config(nut_ups, username="a", password=nut_ups.admin_password))


async def test_unknown_ups_and_closed_port_have_clear_reasons(nut_ups: NutPeer) -> None:
    wrong = UpsNutConfig(name="x", source="nut", port=nut_ups.port, ups="no-such-ups")
    result = await run_probe(wrong, context({}))
    assert not result.ok
    assert result.reason == "upsd answered ERR UNKNOWN-UPS: upsd does not know this UPS name (see ups.conf / upsc -l)"
    closed = free_tcp_port()
    result = await run_probe(UpsNutConfig(name="x", source="nut", port=closed, ups="dummy"), context({}))
    assert result.reason == f"cannot connect to upsd at 127.0.0.1:{closed}: Connection refused"


# -- a upsd that misbehaves: a throwaway server speaking just enough of the protocol ------------


@pytest.fixture
async def bad_upsd() -> AsyncIterator[tuple[list[bytes], int]]:
    """A TCP server answering LIST VAR with whatever the test puts in ``script``."""
    script: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        for chunk in script:
            writer.write(chunk)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    yield script, server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


@pytest.mark.parametrize(("reply", "reason"), [
    ([b"BEGIN LIST VAR u\n", b'VAR u ups.status "OL"\n'], "closed the connection"),
    ([b"BEGIN LIST VAR u\n", b"VAR u x " + b"y" * 70_000 + b"\n"], "sent a line longer than 65536 bytes"),
    ([b"HELLO\n"], "unexpected answer from upsd to LIST VAR u: 'HELLO'"),
    ([b"BEGIN LIST VAR u\n", b"ERR DATA-STALE\n"], "the UPS driver has lost contact with the UPS"),
    ([b"BEGIN LIST VAR u\n"] + [b'VAR u v%d "1"\n' % i for i in range(MAX_VARS + 1)],
     f"upsd sent more than {MAX_VARS} variables for u"),
])
async def test_protocol_breakage_fails_the_round_with_a_reason(bad_upsd: tuple[list[bytes], int],
                                                               reply: list[bytes], reason: str) -> None:
    script, port = bad_upsd
    script.extend(reply)
    result = await run_probe(UpsNutConfig(name="x", source="nut", port=port, ups="u"), context({}))
    assert not result.ok
    assert reason in result.reason


async def test_client_sends_logout_and_closes(bad_upsd: tuple[list[bytes], int]) -> None:
    script, port = bad_upsd
    script.extend([b"BEGIN LIST VAR u\n", b'VAR u ups.status "OL"\n', b"END LIST VAR u\n"])
    async with NutClient("127.0.0.1", port) as client:
        assert await client.list_vars("u") == {"ups.status": "OL"}


# -- the running agent --------------------------------------------------------------------------


def _on_battery_rounds(metrics_url: str) -> tuple[float, float] | None:
    """(value of commune_power_on_battery, start of the round it comes from), once both are exposed."""
    status, body = http_get(metrics_url, timeout=2)
    if status != 200:
        return None
    value = stamp = None
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            if s.labels.get("check") != "power/main-ups":
                continue
            if s.name == "commune_power_on_battery":
                value = s.value
            elif s.name == "commune_probe_last_round_timestamp_seconds":
                stamp = s.value
    return (value, stamp) if value is not None and stamp is not None else None


def test_running_agent_shows_the_ups_on_battery_within_one_interval(nut: NutPeer, tmp_path: Path) -> None:
    interval = 2.0
    port = free_tcp_port()
    config = tmp_path / "agent.yaml"
    config.write_text(f"""\
site: {{id: test-site, province: ha-noi, commune: Xã Thử}}
agent: {{listen: 127.0.0.1:{port}, state_dir: {tmp_path / 'state'}}}
defaults: {{interval: {interval:g}s, timeout: 1s}}
host: {{enabled: false}}
power:
  - {{name: main-ups, source: nut, host: 127.0.0.1, port: {nut.port}, ups: {nut.ups_name}}}
""")
    url = f"http://127.0.0.1:{port}/metrics"
    agent = subprocess.Popen([sys.executable, "-m", "commune_agent.cli", "run", "--config", str(config), "--no-push"],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        first = wait_until(lambda: _on_battery_rounds(url), timeout=20, what="the first UPS round in /metrics",
                           abort=lambda: "agent exited" if agent.poll() is not None else None)
        assert first[0] == 0.0
        nut.set_status("OB DISCHRG")  # returns once upsc shows it
        flipped_at = time.time()
        # the first round that starts after the flip must already see the battery; one interval at most
        later = wait_until(lambda: (r := _on_battery_rounds(url)) and r[1] > flipped_at and r,
                           timeout=interval * 3, interval=0.1, what="a UPS round after the flip")
        assert later[0] == 1.0
    finally:
        agent.terminate()
        output = agent.communicate(timeout=20)[0].decode()
    assert agent.returncode == 0, output
