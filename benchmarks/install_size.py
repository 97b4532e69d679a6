"""Installed size of the agent and of the collector, and the agent's memory with the example config.

Each is installed from this checkout into its own virtualenv beside the system
Python (no pip or setuptools inside: the .deb ships none), byte-compiled as a
running install would be, and measured with `du`. `--rss SECONDS` then runs
the agent-only install on config/agent.example.yaml (loopback targets; its
port and state directory moved to a free port and a temporary directory) and
reads VmRSS/VmHWM from /proc.

    .venv/bin/python benchmarks/install_size.py --rss 60
"""

from __future__ import annotations

import argparse
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PIP = [sys.executable, "-m", "pip"]


def du_bytes(path: Path) -> int:
    return int(subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True,
                              check=True).stdout.split()[0])


def install(venv: Path, spec: str, python: str) -> None:
    subprocess.run([python, "-m", "venv", "--without-pip", str(venv)], check=True)
    subprocess.run([*PIP, "--python", str(venv / "bin/python"), "install", "-q",
                    "--disable-pip-version-check", spec], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run([str(venv / "bin/python"), "-m", "compileall", "-q", str(venv / "lib")],
                   check=True, stdout=subprocess.DEVNULL)


def largest(venv: Path, n: int = 6) -> str:
    site = next(venv.glob("lib/python3*/site-packages"))
    sizes = sorted(((du_bytes(p), p.name) for p in site.iterdir() if p.is_dir()), reverse=True)
    return ", ".join(f"{name} {size / 2**20:.1f}" for size, name in sizes[:n])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def agent_rss(venv: Path, seconds: float, work: Path) -> dict[str, int]:
    port = free_port()
    text = (ROOT / "config/agent.example.yaml").read_text().replace("9469", str(port))
    text = re.sub(r"state_dir: \S+", f"state_dir: {work / 'state'}", text)
    config = work / "agent.yaml"
    config.write_text(text)
    proc = subprocess.Popen([str(venv / "bin/commune-agent"), "run", "--config", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(seconds)  # a benchmark's run length, not a synchronisation
        status = Path(f"/proc/{proc.pid}/status").read_text()
        return {k: int(v.split()[0]) for k, v in re.findall(r"^(VmRSS|VmHWM|RssAnon):\s+(.+)$",
                                                            status, re.M)}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default="/usr/bin/python3", help="the system Python to install beside")
    parser.add_argument("--rss", type=float, default=0, metavar="SECONDS",
                        help="also run the agent this long on the example config and report its memory")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cm-size-") as tmp:
        work = Path(tmp)
        for label, spec in (("agent", "."), ("collector", ".[collector]")):
            venv = work / label
            print(f"installing {label} ({spec}) ...", file=sys.stderr)
            install(venv, spec, args.python)
            print(f"{label}: {du_bytes(venv) / 2**20:.1f} MiB; largest (MiB): {largest(venv)}")
        if args.rss:
            print(f"running the agent {args.rss:.0f} s on the example config ...", file=sys.stderr)
            mem = agent_rss(work / "agent", args.rss, work)
            print("agent memory (MiB): " + ", ".join(f"{k} {v / 1024:.1f}" for k, v in mem.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
