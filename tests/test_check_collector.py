"""`commune-agent check-collector` against a real collector process over TLS on loopback.

One collector (HTTPS with a throwaway CA) holds two sites in its inventory and
tokens for them and for a site it does not know. Each failing line an
installer can meet is produced for real: a wrong port, a CA that did not sign
the certificate, a token that is not the collector's, another site's token,
a site missing from the inventory, a clock far off; and the all-good case,
whose report must be visible at the collector afterwards.
"""

from __future__ import annotations

import io
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from commune_agent.checkcollector import CollectorCheck, print_steps
from commune_agent.config import AgentConfig
from commune_collector.sites import Site
from testsupport.collector import CollectorPeer, self_signed_cert
from testsupport.peers._base import free_tcp_port

HERE = Site("ha-noi-ba-dinh", "Trung tâm Phục vụ hành chính công Phường Ba Đình", "ha-noi", "Phường Ba Đình")
OTHER = Site("hue-thuan-hoa", "Trung tâm Phục vụ hành chính công Phường Thuận Hóa", "hue", "Phường Thuận Hóa")
UNKNOWN = "ha-noi-ba-dnih"  # a typo: not in the inventory, so no token can be issued for it
AGENT = str(Path(sys.executable).with_name("commune-agent"))
STEPS = ["resolved", "reached", "TLS", "token", "inventory", "clock", "report"]


class Setup:
    def __init__(self, peer: CollectorPeer, ca: Path, work: Path):
        self.peer, self.ca, self.work = peer, ca, work
        self.tokens = {site: self.write_token(site, peer.issue_token(site)) for site in (HERE.id, OTHER.id)}

    def write_token(self, name: str, token: str) -> Path:
        path = self.work / f"{name}.token"
        path.write_text(token + "\n")
        path.chmod(0o600)
        return path

    def config(self, *, site: Site | str = HERE, url: str | None = None, ca: Path | None = None,
               token: Path | None = None, province: str | None = None) -> Path:
        site_id = site if isinstance(site, str) else site.id
        doc = {"site": {"id": site_id, "province": province or (site.province if isinstance(site, Site) else "ha-noi"),
                        "commune": "Phường Ba Đình"},
               "agent": {"state_dir": str(self.work / "state")},
               "collector": {"url": url or self.peer.url, "ca_file": str(ca or self.ca),
                             "token_file": str(token or self.tokens[site_id])}}
        path = self.work / f"agent-{time.monotonic_ns()}.yaml"
        path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
        return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    work = tmp_path_factory.mktemp("check-collector")
    cert, key = self_signed_cert(work)
    peer = CollectorPeer(sites=[HERE, OTHER], settings={
        "tls": {"cert_file": str(cert), "key_file": str(key)}, "auth": {"cache_ttl": "0s"}})
    with peer:
        yield Setup(peer, cert, work)


def check(config: Path) -> tuple[int, dict[str, tuple[str, str]], str]:
    """Run the command; (exit code, step -> (result, rest of the line), whole output)."""
    out = subprocess.run([AGENT, "check-collector", "--config", str(config), "--timeout", "5"],
                         capture_output=True, text=True, timeout=60, check=False)
    rows = {}
    for line in out.stdout.splitlines():
        parts = line.split(None, 2)
        if parts and parts[0] in STEPS:
            rows[parts[0]] = (parts[1], parts[2] if len(parts) > 2 else "")
    return out.returncode, rows, out.stdout + out.stderr


def test_all_good_exits_0_and_the_report_is_visible(setup: Setup):
    code, rows, text = check(setup.config())
    assert code == 0, text
    assert [rows[s][0] for s in STEPS] == ["ok"] * len(STEPS), text
    assert HERE.name in rows["inventory"][1] and "Hà Nội" in rows["inventory"][1]
    assert "certificate verified" in rows["TLS"][1]
    assert "all checks passed" in text
    with httpx.Client(verify=ssl.create_default_context(cafile=str(setup.ca)), timeout=10) as client:
        site = client.get(f"{setup.peer.url}/api/v1/sites/{HERE.id}", headers=setup.peer.headers).json()
    assert site["instance"].startswith("check-") and site["last_seq"] == 0
    assert site["instance"] in rows["report"][1]


def test_nothing_listening_fails_at_reached(setup: Setup):
    code, rows, text = check(setup.config(url=f"https://127.0.0.1:{free_tcp_port()}"))
    assert code == 1
    assert rows["resolved"][0] == "ok"
    assert rows["reached"][0] == "FAIL" and "refused" in rows["reached"][1].lower()
    assert "firewall" in rows["reached"][1]  # the next action, on the failing line
    assert all(rows[s][0] == "-" for s in STEPS[2:]), text
    assert "fix 'reached' first" in text


def test_a_ca_that_did_not_sign_the_certificate_fails_at_tls(setup: Setup, tmp_path: Path):
    other_ca, _ = self_signed_cert(tmp_path)
    code, rows, text = check(setup.config(ca=other_ca))
    assert code == 1
    assert rows["reached"][0] == "ok"
    assert rows["TLS"][0] == "FAIL" and "not trusted" in rows["TLS"][1] and str(other_ca) in rows["TLS"][1]
    assert all(rows[s][0] == "-" for s in STEPS[3:]), text


def test_a_token_the_collector_does_not_know_fails_at_token(setup: Setup):
    forged = setup.write_token("forged", "cm_0123456789ab_" + "A" * 43)
    code, rows, text = check(setup.config(token=forged))
    assert code == 1
    assert rows["TLS"][0] == "ok"
    assert rows["token"][0] == "FAIL" and "refused" in rows["token"][1]
    assert f"token issue {HERE.id}" in rows["token"][1]
    assert "A" * 43 not in text  # the token is never printed


def test_another_sites_token_fails_at_token_naming_both_sites(setup: Setup):
    code, rows, text = check(setup.config(token=setup.tokens[OTHER.id]))
    assert code == 1
    assert rows["token"][0] == "FAIL"
    assert OTHER.id in rows["token"][1] and HERE.id in rows["token"][1]
    assert all(rows[s][0] == "-" for s in STEPS[4:]), text  # HERE is in the inventory: no inventory line


def test_a_site_missing_from_the_inventory_fails_at_inventory(setup: Setup):
    """A typo in site.id: the token is the right office's, the id is nobody's."""
    code, rows, text = check(setup.config(site=UNKNOWN, token=setup.tokens[HERE.id]))
    assert code == 1
    assert rows["token"][0] == "FAIL" and HERE.id in rows["token"][1]
    assert rows["inventory"][0] == "FAIL" and f"site {UNKNOWN} is not in the collector's inventory" in text
    assert "typo" in rows["inventory"][1] and HERE.name in rows["inventory"][1]
    assert rows["clock"][0] == "-" and rows["report"][0] == "-", text


def test_a_province_that_disagrees_with_the_inventory_fails(setup: Setup):
    code, rows, _ = check(setup.config(province="hue"))
    assert code == 1
    assert rows["inventory"][0] == "FAIL" and "ha-noi" in rows["inventory"][1]


def test_a_clock_far_off_fails_at_clock(setup: Setup):
    """The check's clock is injected: this machine's clock cannot be moved in a test."""
    cfg = AgentConfig.model_validate(yaml.safe_load(setup.config().read_text()))
    steps = CollectorCheck(cfg, timeout=5, clock=lambda: time.time() - 120).run()
    by_name = {s.name: s for s in steps}
    assert by_name["clock"].ok is False and by_name["clock"].detail.startswith("+12")
    assert "timedatectl" in by_name["clock"].action
    out = io.StringIO()
    print_steps(steps, out)
    assert "fix 'clock' first" in out.getvalue()


def test_no_collector_section_says_nothing_is_pushed(tmp_path: Path):
    config = tmp_path / "agent.yaml"
    config.write_text("site: {id: ha-noi-ba-dinh, province: ha-noi, commune: Phường Ba Đình}\n", encoding="utf-8")
    out = subprocess.run([AGENT, "check-collector", "--config", str(config)], capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 1
    assert "pushes nothing" in out.stderr


def test_whoami_needs_a_token(setup: Setup):
    with httpx.Client(verify=ssl.create_default_context(cafile=str(setup.ca)), timeout=10) as client:
        response = client.get(f"{setup.peer.url}/api/v1/whoami")
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
