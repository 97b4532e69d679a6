"""``commune-agent probe-once``: what an IT team installing a site looks at first.

Runs the real command against real loopback targets: a readable table by
default, JSON with --json, exit 0 only when every check succeeded.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

SITE = {"id": "ha-noi-ba-dinh", "province": "ha-noi", "commune": "Phường Ba Đình"}


def _agent() -> list[str]:
    script = Path(sys.executable).with_name("commune-agent")
    return [str(script)] if script.exists() else [sys.executable, "-m", "commune_agent.cli"]


@pytest.fixture
def listening() -> Iterator[int]:
    """A TCP port that accepts (the kernel completes handshakes into the backlog)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server.getsockname()[1]


@pytest.fixture
def refused() -> Iterator[int]:
    """A TCP port bound but not listening: connections are refused."""
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        yield placeholder.getsockname()[1]


def _write(tmp_path: Path, targets: list[dict[str, Any]]) -> Path:
    config = {"site": SITE, "agent": {"state_dir": str(tmp_path / "state")}, "host": {"enabled": False},
              "links": [{"name": "fiber", "targets": targets}]}
    path = tmp_path / "agent.yaml"
    path.write_text(json.dumps(config, ensure_ascii=False))
    return path


def _icmp(host: str, name: str) -> dict[str, Any]:
    return {"probe": "icmp", "name": name, "host": host, "count": 3, "packet_interval": "20ms",
            "echo_timeout": "500ms"}


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*_agent(), "probe-once", *args], capture_output=True, text=True, timeout=120)


def test_table_when_everything_answers(tmp_path: Path, listening: int) -> None:
    path = _write(tmp_path, [_icmp("127.0.0.1", "dc-v4"), _icmp("::1", "dc-v6"),
                             {"probe": "tcp", "name": "dc-https", "host": "127.0.0.1", "port": listening}])
    proc = _run("--config", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["CHECK", "PROBE", "RESULT", "TIME", "DETAIL"]
    rows = {line.split()[0]: line.split() for line in lines[1:4]}
    assert set(rows) == {"link/fiber/icmp/dc-v4", "link/fiber/icmp/dc-v6", "link/fiber/tcp/dc-https"}
    for row in rows.values():
        assert row[2] == "ok" and row[3].endswith("ms")
    icmp_detail = " ".join(rows["link/fiber/icmp/dc-v4"][4:])
    assert icmp_detail.startswith("rtt ") and "loss 0%" in icmp_detail and "jitter " in icmp_detail
    assert " ".join(rows["link/fiber/tcp/dc-https"][4:]).startswith("connect ")
    assert lines[-1] == "3/3 checks ok"
    assert "probing 3 checks of site ha-noi-ba-dinh" in proc.stderr  # progress goes to stderr


def test_a_failing_target_fails_the_command_and_says_why(tmp_path: Path, refused: int) -> None:
    path = _write(tmp_path, [_icmp("127.0.0.1", "dc"),
                             {"probe": "tcp", "name": "portal", "host": "127.0.0.1", "port": refused}])
    proc = _run("-c", str(path))
    assert proc.returncode == 1
    failed = next(line for line in proc.stdout.splitlines() if line.startswith("link/fiber/tcp/portal"))
    assert failed.split()[2] == "FAIL"
    assert failed.endswith(f"connect to 127.0.0.1:{refused} failed: Connection refused")
    assert proc.stdout.splitlines()[-1] == "1/2 checks ok, 1 failed"


def test_json_for_machines(tmp_path: Path, refused: int) -> None:
    path = _write(tmp_path, [_icmp("127.0.0.1", "dc"),
                             {"probe": "tcp", "name": "portal", "host": "127.0.0.1", "port": refused}])
    proc = _run("-c", str(path), "--json")
    assert proc.returncode == 1
    assert proc.stderr == ""  # nothing but JSON on stdout, nothing chatty on stderr
    out = json.loads(proc.stdout)
    assert out["site"] == "ha-noi-ba-dinh" and out["ok"] is False
    icmp, tcp = out["checks"]
    assert icmp["check"] == "link/fiber/icmp/dc" and icmp["ok"] is True and icmp["reason"] == ""
    assert icmp["labels"] == {"link": "fiber", "role": "primary", "target": "dc"}
    assert icmp["values"]["icmp_packets_received"] == 3.0 and icmp["values"]["icmp_loss_ratio"] == 0.0
    assert 0 < icmp["values"]['icmp_rtt_seconds{stat="avg"}'] < 0.5
    assert icmp["info"]["address"] == "127.0.0.1"
    assert icmp["duration_seconds"] > 0 and icmp["ts"] > 1.7e9
    assert tcp["ok"] is False and tcp["reason"] == f"connect to 127.0.0.1:{refused} failed: Connection refused"


def test_invalid_config_exits_2_with_messages(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("site:\n  id: Bad Id\n  province: ha-noi\n  commune: x\n")
    proc = _run("-c", str(path))
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith(f"error: {path}:2 site.id: 'Bad Id' is not a site id: an id has only lower-case")
    assert "Traceback" not in proc.stderr


def test_help_names_the_options() -> None:
    proc = _run("--help")
    assert proc.returncode == 0
    assert "--json" in proc.stdout and "--config" in proc.stdout
