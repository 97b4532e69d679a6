"""The province's apt repository (docs/deploy.md section 12), built, served and upgraded from, for real.

The Debian 12 package and a newer repack of it go into a flat repository
directory; `deploy/apt/update-repo.sh` (dpkg-scanpackages, apt-ftparchive,
gpg) indexes and signs it with a throwaway key; python's http.server serves
it on loopback inside the site root's network namespace (which holds only
loopback: the root's own Debian mirror is unreachable, as on a site with no
Internet). The site has the older package installed and reports spooled
while its collector is down; with `deploy/apt/commune.sources` and the
exported key in place, `apt-get update && apt-get install commune-agent`
upgrades it, and the spool, config and token are untouched. Without the key
apt refuses the repository. Marked `deb` (make test-deb), not in make test.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from testsupport.collector import http_get
from testsupport.debroot import (
    ROOT,
    BareRoot,
    build_deb,
    deb_version,
    install_site_files,
    repack_newer,
    run,
    spool_while_collector_down,
)
from testsupport.peers._base import require_binary, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.deb, pytest.mark.timeout(1500)]

PORT = 18490
KEY = "apt@province.example"
DOCS_URL = "https://apt.province.example/commune/bookworm/"
SPOOLING_YAML = """site: {id: ha-noi-ba-dinh, province: ha-noi, commune: Phường Ba Đình}
agent: {listen: "127.0.0.1:19469", state_dir: /var/lib/commune-agent}
links:
  - name: fiber
    targets:
      - {probe: tcp, name: nobody-listens, host: 127.0.0.1, port: 18491, interval: 2s, timeout: 1s}
collector: {url: "http://127.0.0.1:18491", token_file: /etc/commune-agent/token, push_interval: 1s,
            backoff_max: 2s}
"""


def make_repository(srv: Path, packages: list[Path], gnupg: Path) -> Path:
    """srv/bookworm/ with the packages, indexed and signed the way docs/deploy.md says."""
    gnupg.mkdir(mode=0o700)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(gnupg), "GNUPGHOME": str(gnupg)}
    run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key", f"Province apt (test) <{KEY}>",
         "ed25519", "sign", "1d"], env=env)
    release = srv / "bookworm"
    release.mkdir(parents=True)
    for package in packages:
        shutil.copy(package, release / package.name)
    done = run(["sh", str(ROOT / "deploy" / "apt" / "update-repo.sh"), str(release), KEY], env=env)
    assert f"{len(packages)} package version(s)" in done.stdout, done.stdout
    return release


def test_site_upgrades_from_the_province_repository_keeping_the_spool(tmp_path: Path):
    for tool in ("dpkg-scanpackages", "apt-ftparchive", "gpg"):
        require_binary(tool)
    old = build_deb("bookworm", tmp_path / "out")
    new = repack_newer(old, tmp_path / "out")
    srv = tmp_path / "srv"
    release = make_repository(srv, [old, new], tmp_path / "gnupg")
    indexed = (release / "Packages").read_text()
    assert f"Version: {deb_version(old)}" in indexed and f"Version: {deb_version(new)}" in indexed
    assert "-----BEGIN PGP SIGNATURE-----" in (release / "InRelease").read_text()

    root = BareRoot("bookworm", tmp_path)
    server = None
    try:
        root.assert_loopback_only()
        shutil.copy(old, root.file(f"/tmp/{old.name}"))
        root.sh(f"apt-get install -y -q ./tmp/{old.name} 2>&1")
        install_site_files(root, SPOOLING_YAML, "t" * 43)
        spooled = spool_while_collector_down(root, 2, tmp_path / "agent.log")
        token = root.file("/etc/commune-agent/token").read_text()

        server = subprocess.Popen(root.host_argv(sys.executable, "-m", "http.server", str(PORT), "--bind",
                                                 "127.0.0.1", "--directory", str(srv)),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{PORT}/bookworm/"
        wait_until(lambda: "Package: commune-agent" in http_get(url + "Packages", root.netns), timeout=30,
                   what="the repository on loopback", abort=lambda: server.poll() is not None and "exited")
        sources = (ROOT / "deploy" / "apt" / "commune.sources").read_text()
        assert DOCS_URL in sources
        root.file("/etc/apt/sources.list.d/commune.sources").write_text(sources.replace(DOCS_URL, url))

        # the site's two files: without the province's key, apt refuses the repository
        unsigned = root.sh("apt-get update 2>&1", check=False)
        assert "commune-province.gpg" in unsigned.stdout or "NO_PUBKEY" in unsigned.stdout, unsigned.stdout
        assert "is not signed" in unsigned.stdout, unsigned.stdout
        shutil.copy(srv / "commune-province.gpg", root.file("/usr/share/keyrings/commune-province.gpg"))
        upgraded = root.sh("apt-get update 2>&1 && apt-get install -y -q commune-agent 2>&1")
        assert f"Unpacking commune-agent ({deb_version(new)}) over ({deb_version(old)})" in upgraded.stdout, \
            upgraded.stdout
        assert root.installed_version() == deb_version(new)
        assert root.spool() == spooled
        assert root.file("/etc/commune-agent/agent.yaml").read_text(encoding="utf-8") == SPOOLING_YAML
        assert root.file("/etc/commune-agent/token").read_text() == token
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        root.close()
