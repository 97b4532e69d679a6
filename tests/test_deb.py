"""The commune-agent .deb, built and installed for real into bare Debian 12 and 13 roots with no network.

For each release: `scripts/build-deb.sh` builds the package against that
release's Python; a fresh copy of a bare root (debootstrap minbase + python3,
cached in /var/tmp) then gets it with `apt install ./commune-agent_*.deb`
inside a network namespace of its own holding only loopback, so nothing can
be downloaded. In that root: the user, directories and unit are there,
`check-config` and `probe-once` pass on a loopback config; the agent spools
reports while the collector is down; an upgrade to a newer package keeps the
spool, and the new version delivers it to a real collector process (running
in the same namespace); `remove` keeps config, token and spool, `purge`
deletes them. Slow (a build and an install per release): bounded by the
timeouts below, marked `slow` and `deb`: `make test-deb` runs them, `make test`
does not (about 6 minutes for both releases on a shared 2-core machine once the roots are cached). COMMUNE_DEB_DIR=dist/deb tests packages built
by `make deb` instead of building them again.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from testsupport.collector import CollectorProcess
from testsupport.debroot import (
    ROOT,
    SUITES,
    BareRoot,
    build_deb,
    install_site_files,
    repack_newer,
    spool_while_collector_down,
    start_agent,
    stop_agent,
)
from testsupport.peers._base import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.deb, pytest.mark.timeout(1500)]

SITE = "ha-noi-ba-dinh"


@pytest.fixture(scope="module", params=list(SUITES))
def debs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, Path]]:
    """(suite, the built .deb, the same package repacked as a newer version for the upgrade)."""
    suite = request.param
    out = tmp_path_factory.mktemp(f"deb-{suite}")
    built = build_deb(suite, out)
    yield suite, built, repack_newer(built, out)


def results_ingested(collector: CollectorProcess) -> float:
    """Results the collector ingested, from its /metrics (read as a national operator)."""
    for line in collector.get("/metrics").splitlines():
        if line.startswith("commune_collector_ingest_results_total "):
            return float(line.split()[1])
    return 0.0


AGENT_YAML = """site: {{id: {site}, province: ha-noi, commune: Phường Ba Đình}}
agent: {{listen: "127.0.0.1:19469", state_dir: /var/lib/commune-agent}}
links:
  - name: fiber
    targets:
      - {{probe: icmp, name: loopback, host: 127.0.0.1, count: 2, packet_interval: 200ms, echo_timeout: 500ms,
         interval: 3s, timeout: 2s}}
host: {{interval: 2s, timeout: 1s}}
collector: {{url: "{url}", token_file: /etc/commune-agent/token, push_interval: 1s, backoff_max: 2s}}
"""


def test_installs_offline_upgrades_keeping_the_spool_and_removes(debs, tmp_path: Path):
    suite, deb, newer = debs
    root = BareRoot(suite, tmp_path)
    collector = CollectorProcess(tmp_path, "", netns=root.netns)
    token = collector.enrol(SITE, tmp_path / "token").read_text().strip()
    agent = None
    try:
        for package in (deb, newer):
            shutil.copy(package, root.file(f"/tmp/{package.name}"))
        root.assert_loopback_only()

        # install with no network: everything the package needs is in the bare root already
        installed = root.sh(f"apt-get install -y -q ./tmp/{deb.name} 2>&1")
        assert "installed, not started" in installed.stdout, installed.stdout
        assert root.sh("getent passwd commune-agent").stdout.split(":")[6].strip() == "/usr/sbin/nologin"
        assert root.sh("stat -c '%a %U %G' /etc/commune-agent /var/lib/commune-agent").stdout.split("\n")[:2] == \
            ["750 root commune-agent", "750 commune-agent commune-agent"]
        unit = root.file("/usr/lib/systemd/system/commune-agent.service").read_text()
        assert unit == (ROOT / "deploy" / "systemd" / "commune-agent.service").read_text()
        assert root.sh("commune-agent --version").stdout.startswith("commune-agent ")
        assert not root.file("/opt/commune-agent/bin/pip").exists()
        assert not list(root.path.glob("opt/commune-agent/lib/python3*/site-packages/commune_collector"))

        # the installer's steps on a loopback config
        install_site_files(root, AGENT_YAML.format(site=SITE, url=collector.url), token)
        assert "pushes to" in root.sh("commune-agent check-config /etc/commune-agent/agent.yaml").stdout
        once = root.sh("commune-agent probe-once --config /etc/commune-agent/agent.yaml", check=False)
        assert once.returncode == 0, once.stdout + once.stderr
        assert "2/2 checks ok" in once.stdout

        # the collector is down: the old version spools
        before = spool_while_collector_down(root, 3, tmp_path / "agent-1.log")

        # upgrade: the spool stays, untouched
        upgraded = root.sh(f"apt-get install -y -q ./tmp/{newer.name} 2>&1")
        assert "Unpacking commune-agent" in upgraded.stdout and "over (" in upgraded.stdout, upgraded.stdout
        assert root.spool() == before

        # the new version delivers what the old one spooled
        collector.start()
        agent = start_agent(root, tmp_path / "agent-2.log")
        wait_until(lambda: root.spool()[0] == 0 and results_ingested(collector) >= before[1], timeout=120,
                   what=f"the {before[1]} spooled results delivered after the upgrade",
                   abort=lambda: agent.poll() is not None and (tmp_path / "agent-2.log").read_text())
        stop_agent(agent)
        agent = None

        # remove keeps config, token and spool; purge deletes them
        root.sh("apt-get remove -y -q commune-agent 2>&1")
        for kept in ("/etc/commune-agent/agent.yaml", "/etc/commune-agent/token", "/var/lib/commune-agent/spool.db"):
            assert root.file(kept).exists(), f"remove deleted {kept}"
        assert not root.file("/opt/commune-agent/bin/commune-agent").exists()
        root.sh("apt-get purge -y -q commune-agent 2>&1")
        for gone in ("/etc/commune-agent", "/var/lib/commune-agent", "/opt/commune-agent"):
            assert not root.file(gone).exists(), f"purge left {gone}"
    finally:
        if agent is not None:
            stop_agent(agent)
        collector.stop()
        root.close()
