"""The arm64 commune-agent .deb, built and smoke-tested on this amd64 machine under qemu-user.

For Debian 12 and 13, `ARCH=arm64 scripts/build-deb.sh SUITE` debootstraps an
arm64 root (its programs run through qemu-aarch64-static, registered with the
kernel's binfmt_misc by the script), fetches aarch64 wheels, builds the
virtualenv with that root's python3 and packs it. A fresh copy of the
root, entered through a network namespace holding only loopback, then gets it
with `apt install ./commune-agent_*_arm64.deb`; `--version`, `check-config`
on the shipped example and `probe-once` on a config whose only targets are a
TCP and HTTP listener this test starts on loopback all pass there, emulated.
Every ELF file in /opt/commune-agent is aarch64: nothing of the build
machine's architecture slipped in. ICMP is not exercised: qemu-user 7.2 does
not implement setsockopt(SO_TIMESTAMPNS), which the ICMP engine sets, so it
fails under emulation only (docs/deploy.md, "arm64"). Slow (about 7 minutes for both with the
arm64 roots cached in /var/tmp; the first debootstraps under emulation add about 14): marked `deb` and
`arm64`, run by `make test-deb-arm64`, not by `make test` nor `make test-deb`.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from testsupport.collector import http_get
from testsupport.debroot import SUITES, BareRoot, build_deb, run
from testsupport.peers._base import require_binary, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.deb, pytest.mark.arm64, pytest.mark.timeout(3000)]

PORT = 18480
EM_AARCH64 = 0xB7
PROBE_YAML = f"""site: {{id: ha-noi-ba-dinh, province: ha-noi, commune: Phường Ba Đình}}
agent: {{listen: "127.0.0.1:19469", state_dir: /var/lib/commune-agent}}
links:
  - name: fiber
    targets:
      - {{probe: tcp, name: listener, host: 127.0.0.1, port: {PORT}}}
      - {{probe: http, name: listener-page, url: "http://127.0.0.1:{PORT}/", expect_status: [200],
         body_regex: "trung tâm"}}
"""


def elf_machines(tree: Path) -> dict[Path, int]:
    """e_machine of every ELF file under ``tree`` (little-endian ELF64: two bytes at offset 18)."""
    machines = {}
    for path in tree.rglob("*"):
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as f:
                head = f.read(20)
            if head[:4] == b"\x7fELF" and len(head) == 20:
                machines[path] = int.from_bytes(head[18:20], "little")
    return machines


@pytest.mark.parametrize("suite", list(SUITES))
def test_arm64_deb_installs_offline_and_probes_under_qemu(suite: str, tmp_path: Path):
    require_binary("qemu-aarch64-static")
    deb = build_deb(suite, tmp_path / "out", arch="arm64")
    assert deb.name.endswith(f"~deb{SUITES[suite]}_arm64.deb")
    assert run(["dpkg-deb", "-f", str(deb), "Architecture"]).stdout.strip() == "arm64"

    root = BareRoot(suite, tmp_path, arch="arm64")
    listener = None
    try:
        assert root.sh("uname -m").stdout.strip() == "aarch64"  # the root's programs are emulated
        root.assert_loopback_only()
        shutil.copy(deb, root.file(f"/tmp/{deb.name}"))
        installed = root.sh(f"apt-get install -y -q ./tmp/{deb.name} 2>&1", timeout=900)
        assert "installed, not started" in installed.stdout, installed.stdout

        machines = elf_machines(root.file("/opt/commune-agent"))
        assert machines, "no compiled module in the virtualenv"
        assert {p: m for p, m in machines.items() if m != EM_AARCH64} == {}
        assert root.sh("commune-agent --version").stdout.startswith("commune-agent ")
        example = root.sh("commune-agent check-config /usr/share/doc/commune-agent/examples/agent.example.yaml")
        assert ": OK, site ha-noi-ba-dinh" in example.stdout, example.stdout

        www = tmp_path / "www"
        www.mkdir()
        (www / "index.html").write_text("<h1>trung tâm</h1>\n", encoding="utf-8")
        listener = subprocess.Popen(root.host_argv(sys.executable, "-m", "http.server", str(PORT), "--bind",
                                                   "127.0.0.1", "--directory", str(www)),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: "trung" in http_get(f"http://127.0.0.1:{PORT}/", root.netns), timeout=30,
                   what="the loopback listener", abort=lambda: listener.poll() is not None and "exited")
        root.file("/etc/commune-agent/agent.yaml").write_text(PROBE_YAML, encoding="utf-8")
        checked = root.sh("commune-agent check-config /etc/commune-agent/agent.yaml")
        assert "3 checks, pushes nothing" in checked.stdout, checked.stdout
        once = root.sh("commune-agent probe-once --config /etc/commune-agent/agent.yaml", check=False,
                       timeout=300)
        assert once.returncode == 0, once.stdout + once.stderr
        assert "3/3 checks ok" in once.stdout, once.stdout
        assert "link/fiber/http/listener-page" in once.stdout
    finally:
        if listener is not None:
            listener.terminate()
            listener.wait(10)
        root.close()
