"""scripts/: the README's machinery behaves on a machine where nothing is installed or listening.

A bare Debian is the case these scripts exist for, and there "nothing found"
is normal: no listener on a default port, no PostgreSQL cluster. Under
`set -euo pipefail` a lookup that finds nothing must not stop the script.
The functions are sourced into such a shell and called directly; nothing is
installed or stopped.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

from testsupport.peers._base import require_binary

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
DEPS = SCRIPTS / "install-test-deps.sh"


def strict_bash(body: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run `body` after sourcing install-test-deps.sh in a shell with errexit and pipefail."""
    script = f"set -euo pipefail\nsource {DEPS}\n{body}\necho END\n"
    env = {**os.environ, "PATH": path or os.environ["PATH"]}
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60,
                          check=False, env=env)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_listener_pid_is_empty_and_succeeds_when_nothing_listens():
    require_binary("ss")
    result = strict_bash(f'pid=$(listener_pid tcp {free_port()}); echo "pid=[$pid]"')
    assert result.returncode == 0, result.stderr
    assert "pid=[]" in result.stdout and "END" in result.stdout


def test_listener_pid_finds_a_listener():
    require_binary("ss")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        result = strict_bash(f'pid=$(listener_pid tcp {port}); echo "pid=[$pid]"')
    assert result.returncode == 0, result.stderr
    assert f"pid=[{os.getpid()}]" in result.stdout


def test_lookups_succeed_without_ss_or_pg_lsclusters(tmp_path):
    """A minimal Debian has neither iproute2's ss nor postgresql-common before the install."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "awk", "cat", "id", "dpkg-query", "grep"):
        found = subprocess.run(["bash", "-c", f"command -v {tool}"], capture_output=True,
                               text=True, check=False).stdout.strip()
        if found:
            (bin_dir / tool).symlink_to(found)
    result = strict_bash('pid=$(listener_pid udp 161); echo "pid=[$pid]"; pg_clusters',
                         path=str(bin_dir))
    assert result.returncode == 0, result.stderr
    assert "pid=[]" in result.stdout and "END" in result.stdout


def test_failing_pg_lsclusters_is_nothing_found(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "pg_lsclusters"
    fake.write_text("#!/bin/sh\necho 'Error: no clusters' >&2\nexit 1\n")
    fake.chmod(0o755)
    result = strict_bash('out=$(pg_clusters); echo "clusters=[$out]"',
                         path=f"{bin_dir}:{os.environ['PATH']}")
    assert result.returncode == 0, result.stderr
    assert "clusters=[]" in result.stdout


def test_missing_packages_lists_an_absent_package():
    require_binary("dpkg-query")
    result = strict_bash("PACKAGES=(no-such-package-cm bash); missing_packages")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["no-such-package-cm", "END"]


def test_scripts_pass_shellcheck():
    shellcheck = require_binary("shellcheck")
    result = subprocess.run([shellcheck, *map(str, sorted(SCRIPTS.glob("*.sh")))],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_playwright_node_dependency_is_in_the_package_list():
    """Playwright's bundled node links libatomic.so.1, absent from a minimal Debian."""
    result = strict_bash('printf "%s\\n" "${PACKAGES[@]}"')
    assert result.returncode == 0, result.stderr
    assert "libatomic1" in result.stdout.split()
