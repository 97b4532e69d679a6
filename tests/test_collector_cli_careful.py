"""The collector's CLI as an operator meets it: the README's steps in order, no store made up, PostgreSQL down.

The README's collector block is read from README.md and run line by line, as
written, in a scratch directory holding a copy of `config/` (so the relative
`data_dir` lands there); `serve` gets a free port instead of 8470.
"""

from __future__ import annotations

import shlex
import shutil
import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from commune_collector.cli.common import DEFAULT_CONFIG
from testsupport.collector import CLI
from testsupport.peers._base import free_tcp_port, wait_until

ROOT = Path(__file__).resolve().parents[1]


def readme_collector_steps() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## The collector", 1)[1]
    block = section.split("```sh", 1)[1].split("```", 1)[0]
    return [line.split("#", 1)[0].strip() for line in block.strip().splitlines() if line.strip()]


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)


def test_the_readme_collector_steps_run_in_order_as_written(tmp_path: Path):
    shutil.copytree(ROOT / "config", tmp_path / "config")
    steps = readme_collector_steps()
    assert [s.split()[1] for s in steps] == ["check-config", "sites", "sites", "sites", "token", "operator", "serve"]
    token = ""
    for step in steps[:-1]:
        argv = shlex.split(step)
        assert argv[0] == "commune-collector"
        result = run([CLI, *argv[1:]], tmp_path)
        assert result.returncode == 0, f"README step `{step}` exited {result.returncode}: {result.stderr}"
        if argv[1:3] == ["token", "issue"]:
            token, site = result.stdout.strip(), argv[3]
    assert token.startswith("cm_")
    port = free_tcp_port()
    serve = subprocess.Popen([CLI, *shlex.split(steps[-1])[1:], "--listen", f"127.0.0.1:{port}"], cwd=tmp_path,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: httpx.get(f"{url}/readyz", timeout=2).status_code == 200, timeout=60,
                   what="the README's collector to answer", abort=lambda: serve.poll() is not None and "exited")
        me = httpx.get(f"{url}/api/v1/whoami", headers={"Authorization": f"Bearer {token}"}, timeout=10).json()
        assert me["site"] == site and me["in_inventory"] is True
        assert (tmp_path / ".state" / "collector").is_dir()  # the config's relative data_dir, in the cwd
    finally:
        serve.terminate()
        serve.wait(30)


@pytest.mark.parametrize("args", [["sites", "list"], ["token", "list"], ["migrate"], ["token", "issue", "x"]])
def test_no_config_creates_no_store_in_the_cwd(tmp_path: Path, args: list[str]):
    if DEFAULT_CONFIG.exists():
        pytest.skip(f"{DEFAULT_CONFIG} exists on this machine: it is the default")
    result = run([CLI, *args], tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: no --config given") and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("args", [["migrate"], ["sites", "list"], ["token", "issue", "ha-noi-ba-dinh"], ["serve"]])
def test_postgresql_unreachable_is_one_line_naming_its_host(tmp_path: Path, args: list[str]):
    port = _closed_port()
    config = tmp_path / "collector.yaml"
    config.write_text(f"listen: 127.0.0.1:{free_tcp_port()}\ndata_dir: {tmp_path / 'data'}\n"
                      f"database:\n  dsn: postgresql://commune:s3cret-pw@127.0.0.1:{port}/commune\n")
    result = run([CLI, *args, "--config", str(config)], tmp_path)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"host 127.0.0.1, port {port}" in errors[0], result.stderr
    assert "Traceback" not in result.stderr and "s3cret-pw" not in result.stderr
