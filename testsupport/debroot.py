"""Bare Debian roots for the .deb tests: build the package, install it with no network, run the agent there.

Shared by tests/test_deb.py (install, spool, upgrade, remove, purge on amd64),
tests/test_deb_repo.py (the province's apt repository) and
tests/test_deb_arm64.py (the arm64 package under qemu-user). The roots are
copies of the ones scripts/build-deb.sh caches in /var/tmp; each copy is
entered through a network namespace of its own holding only loopback.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import uuid
from pathlib import Path

from testsupport.peers._base import require_binary, require_root, wait_until

ROOT = Path(__file__).resolve().parents[1]
SUITES = {"bookworm": "12", "trixie": "13"}
ENV = ["/usr/bin/env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C.UTF-8"]


def run(argv: list[str], timeout: float = 600, check: bool = True,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command; a failure names the command and carries its output."""
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def root_cache(suite: str, arch: str = "amd64") -> Path:
    """Where scripts/build-deb.sh keeps the bare root of a release and architecture."""
    return Path(f"/var/tmp/commune-deb-root-{suite}" + ("" if arch == "amd64" else f"-{arch}"))


def build_deb(suite: str, out: Path, arch: str = "amd64") -> Path:
    """The .deb for a release: the one `make deb` left in COMMUNE_DEB_DIR, else built by scripts/build-deb.sh."""
    require_root("building a .deb chroots into a Debian root")
    for tool in ("debootstrap", "dpkg-deb", "ip"):
        require_binary(tool)
    pattern = f"commune-agent_*~deb{SUITES[suite]}_{arch}.deb"
    prebuilt = sorted(Path(os.environ.get("COMMUNE_DEB_DIR", "/nonexistent")).glob(pattern))
    if prebuilt:  # rerunning after `make deb`: test what was built
        return prebuilt[-1]
    result = subprocess.run(["bash", str(ROOT / "scripts" / "build-deb.sh"), suite], capture_output=True,
                            text=True, timeout=2400, cwd=ROOT, check=False,
                            env={**os.environ, "OUT": str(out), "ARCH": arch})
    assert result.returncode == 0, result.stderr[-3000:]
    built = Path(result.stdout.strip().splitlines()[-1])
    assert built.match(pattern), built
    return built


def deb_version(deb: Path) -> str:
    return run(["dpkg-deb", "-f", str(deb), "Version"]).stdout.strip()


def repack_newer(deb: Path, out: Path) -> Path:
    """The same package under a higher version (what a province's next release looks like to dpkg)."""
    tree = out / "newer"
    out.mkdir(parents=True, exist_ok=True)
    run(["dpkg-deb", "-R", str(deb), str(tree)])
    control = tree / "DEBIAN" / "control"
    text = control.read_text()
    version = deb_version(deb)
    newer = version.replace("-1~", "-2~")
    control.write_text(text.replace(f"Version: {version}", f"Version: {newer}"))
    target = out / deb.name.replace(version, newer)
    run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(tree), str(target)])
    shutil.rmtree(tree)
    return target


class BareRoot:
    """A fresh copy of the cached bare root, /proc and /sys mounted, entered through its own network namespace."""

    def __init__(self, suite: str, where: Path, arch: str = "amd64"):
        cache = root_cache(suite, arch)
        assert (cache / "usr/bin/python3").exists(), f"{cache} was not built by scripts/build-deb.sh"
        self.path = where / "root"
        run(["cp", "-a", str(cache), str(self.path)], timeout=600)
        self.netns = f"cmdeb-{uuid.uuid4().hex[:8]}"
        run(["ip", "netns", "add", self.netns])
        run(["ip", "netns", "exec", self.netns, "ip", "link", "set", "lo", "up"])
        run(["mount", "-t", "proc", "proc", str(self.path / "proc")])
        run(["mount", "-t", "sysfs", "sysfs", str(self.path / "sys")])  # a real machine has both

    def argv(self, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", self.netns, "chroot", str(self.path), *ENV, *cmd]

    def host_argv(self, *cmd: str) -> list[str]:
        """A command of this machine run in the root's namespace (a peer the site talks to)."""
        return ["ip", "netns", "exec", self.netns, *cmd]

    def sh(self, script: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return run(self.argv("/bin/sh", "-c", script), timeout=timeout, check=check)

    def file(self, path: str) -> Path:
        return self.path / path.lstrip("/")

    def installed_version(self) -> str:
        return self.sh("dpkg-query -W -f='${Version}' commune-agent").stdout.strip()

    def assert_loopback_only(self) -> None:
        assert "link/ether" not in run(self.host_argv("ip", "link")).stdout

    def spool(self) -> tuple[int, int]:
        """(batches, results) waiting in the agent's spool, read from outside."""
        with sqlite3.connect(f"file:{self.file('/var/lib/commune-agent/spool.db')}?mode=ro", uri=True) as db:
            batches, results = db.execute("SELECT count(*), coalesce(sum(results), 0) FROM batches "
                                          "WHERE rejected IS NULL").fetchone()
        return batches, results

    def close(self) -> None:
        for mount in ("proc", "sys"):
            run(["umount", "-l", str(self.path / mount)], check=False)
        run(["ip", "netns", "delete", self.netns], check=False)
        shutil.rmtree(self.path, ignore_errors=True)


def install_site_files(root: BareRoot, config: str, token: str) -> None:
    """What the installer does after `apt install`: the site's config and token, with the modes the docs give."""
    root.file("/etc/commune-agent/agent.yaml").write_text(config, encoding="utf-8")
    root.file("/etc/commune-agent/token").write_text(token + "\n")
    root.sh("chown commune-agent:commune-agent /etc/commune-agent/token && chmod 600 /etc/commune-agent/token"
            " && chgrp commune-agent /etc/commune-agent/agent.yaml && chmod 640 /etc/commune-agent/agent.yaml")


def start_agent(root: BareRoot, log: Path) -> subprocess.Popen[str]:
    """`commune-agent run` as the package's user would run it (no systemd in the root)."""
    return subprocess.Popen(root.argv("setpriv", "--reuid=commune-agent", "--regid=commune-agent",
                                      "--init-groups", "--inh-caps=+net_raw", "--ambient-caps=+net_raw",
                                      "/usr/bin/commune-agent", "run", "--config", "/etc/commune-agent/agent.yaml"),
                            stdout=subprocess.DEVNULL, stderr=log.open("w"), text=True)


def stop_agent(agent: subprocess.Popen[str]) -> None:
    if agent.poll() is None:
        agent.send_signal(signal.SIGTERM)
        agent.wait(30)


def spool_while_collector_down(root: BareRoot, batches: int, log: Path) -> tuple[int, int]:
    """Run the installed agent until ``batches`` batches wait in its spool, stop it; the spool's (batches, results)."""
    agent = start_agent(root, log)
    try:
        wait_until(lambda: root.file("/var/lib/commune-agent/spool.db").exists() and root.spool()[0] >= batches,
                   timeout=120, what=f"{batches} batches spooled while the collector is down",
                   abort=lambda: agent.poll() is not None and log.read_text())
    finally:
        stop_agent(agent)
    return root.spool()
