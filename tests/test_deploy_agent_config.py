"""``commune-collector agent-config``: every site's agent YAML from the inventory, valid, token-free.

The inventory is the generator's realistic one (340 communes spread over the
34 provinces like the real ones, with their links, devices and power), imported with the real CLI into a real
store; the configs are generated with the real CLI and each is checked with
``commune-agent check-config``'s own code path (a few also as a real process).
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from commune_agent.cli import main as agent_main

VENV_BIN = Path(sys.executable).parent
COLLECTOR = str(VENV_BIN / "commune-collector")
AGENT = str(VENV_BIN / "commune-agent")
SITES = 340  # spread over the 34 provinces like the real 3,321


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([COLLECTOR, *args], capture_output=True, text=True, timeout=300, check=False, cwd=cwd)


@pytest.fixture(scope="module")
def inventory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A collector config whose store holds the generated inventory."""
    root = tmp_path_factory.mktemp("agent-config")
    config = root / "collector.yaml"
    config.write_text(f"data_dir: {root / 'data'}\n")
    assert cli("sites", "generate", "--count", str(SITES), "-o", str(root / "sites.csv")).returncode == 0
    result = cli("sites", "import", str(root / "sites.csv"), "--config", str(config))
    assert result.returncode == 0, result.stderr
    yield config


def check_config(path: Path) -> tuple[int, str]:
    """``commune-agent check-config PATH`` in this process (the same code the command runs)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = agent_main(["check-config", "--without-token", str(path)])
    return code, out.getvalue() + err.getvalue()


def test_every_generated_config_passes_check_config(inventory, tmp_path):
    out = tmp_path / "configs"
    result = cli("agent-config", "--all", "--out", str(out), "--config", str(inventory),
                 "--collector-url", "https://collector.example.test:8470")
    assert result.returncode == 0, result.stderr
    assert f"wrote {SITES} agent configs" in result.stderr and f"generated {SITES}/{SITES}" in result.stderr
    files = sorted(out.glob("*.yaml"))
    assert len(files) == SITES
    for path in files:
        code, text = check_config(path)
        assert code == 0, text
        assert f"{path}: OK, site {path.stem} " in text
    for path in files[:: SITES // 3]:  # and as the real command, on a few
        real = subprocess.run([AGENT, "check-config", "--without-token", str(path)], capture_output=True, text=True, timeout=60)
        assert real.returncode == 0 and "OK" in real.stdout, real.stderr


def test_generated_config_carries_the_inventory_and_a_token_reference_never_the_token(inventory, tmp_path):
    site = cli("sites", "list", "--province", "hue", "--limit", "1", "--json", "--config", str(inventory))
    row = yaml.safe_load(site.stdout)["items"][0]
    token = cli("token", "issue", row["id"], "--config", str(inventory)).stdout.strip()
    assert len(token) > 20
    result = cli("agent-config", row["id"], "--config", str(inventory))
    assert result.returncode == 0, result.stderr
    assert token not in result.stdout and token not in result.stderr
    config = yaml.safe_load(result.stdout)
    assert config["site"] == {"id": row["id"], "province": "hue", "commune": row["commune"], "name": row["name"]}
    assert config["collector"]["token_file"] == "/etc/commune-agent/token"
    assert "token" not in config["collector"]
    assert [link["name"] for link in config.get("links", [])] == row["links"]
    assert [d["name"] for d in config.get("devices", [])] == row["devices"]
    assert [p["name"] for p in config.get("power", [])] == row["power"]
    fiber = next(link for link in config["links"] if link["name"] == "fiber")
    assert fiber["targets"][0]["host"] == "dc.hue.commune.internal"  # {{ province }} filled in
    assert result.stdout.startswith(f"# commune-agent configuration for {row['id']} ")


def test_one_province_and_per_site_overrides(inventory, tmp_path):
    profile = tmp_path / "profile.yaml"
    text = cli("agent-config", "--show-profile").stdout
    text = text.replace("provinces: {}   # e.g. ha-noi: {dc_host: 10.1.0.10}", "provinces:\n  ha-noi: {dc_host: 10.1.0.10}")
    profile.write_text(text)
    out = tmp_path / "ha-noi"
    result = cli("agent-config", "--all", "--province", "ha-noi", "--out", str(out), "--profile", str(profile),
                 "--config", str(inventory))
    assert result.returncode == 0, result.stderr
    files = sorted(out.glob("*.yaml"))
    from commune_collector.generate import scaled_counts
    assert len(files) == scaled_counts(SITES)["ha-noi"] and all(f.name.startswith("ha-noi-") for f in files)
    fiber = yaml.safe_load(files[0].read_text())["links"][0]
    assert fiber["targets"][0]["host"] == "10.1.0.10"


@pytest.mark.parametrize(("edit", "expected", "line_of"), [
    (("{{ lan }}.2", "{{ lann }}.2"), "devices.switch.host: '{{ lann }}.2': 'lann' is undefined", "{{ lann }}.2"),
    (("  kiosk: {kind: ping", "  kiosque: {kind: ping"),
     "devices.kiosk: the inventory lists 'kiosk' but the profile does not say how to probe it", "devices:"),
    (("count: 5}", "count: 50}"), "links.fiber.targets[0].count", "count: 50}"),
    (("token_file: /etc/commune-agent/token", "token: s3cret"), "collector: never put a token in the profile",
     "collector:"),
])
def test_a_bad_profile_names_its_line_and_writes_nothing(inventory, tmp_path, edit, expected, line_of):
    text = cli("agent-config", "--show-profile").stdout
    assert edit[0] in text
    profile = tmp_path / "profile.yaml"
    profile.write_text(text.replace(edit[0], edit[1], 1))
    line = next(i for i, row in enumerate(profile.read_text().splitlines(), 1) if row.strip().startswith(line_of)
                or line_of in row and not line_of.endswith(":"))
    out = tmp_path / "out"
    result = cli("agent-config", "--all", "--out", str(out), "--profile", str(profile), "--config", str(inventory))
    assert result.returncode == 1
    assert f"error: {profile}:{line} {expected}" in result.stderr, result.stderr
    assert not out.exists()
    assert "s3cret" not in result.stderr


def test_unknown_site_and_missing_arguments_are_refused(inventory):
    result = cli("agent-config", "no-such-site", "--config", str(inventory))
    assert result.returncode == 1 and "'no-such-site' is not in the collector's inventory" in result.stderr
    result = cli("agent-config", "--config", str(inventory))
    assert result.returncode == 2 and "name one SITE, or give --all" in result.stderr
    result = cli("agent-config", "--all", "--config", str(inventory))
    assert result.returncode == 2 and "give --out DIR" in result.stderr


def test_a_placeholders_output_is_reused_only_while_the_values_it_reads_are_the_same():
    from commune_collector.agentconfig import agent_config_for, parse_profile
    from commune_collector.sites import Site

    profile = parse_profile(
        "collector: {url: 'http://{{ host }}:8470', token_file: /etc/commune-agent/token}\n"
        "agent: {n: '{{ n }}', upper: '{{ n | string | upper }}-{{ site }}', host: '{{ host }}'}\n"
        "vars: {host: dc.example, n: 1}\n"
        "sites: {b: {n: true}, c: {n: 1.0}, d: {host: other.example}}\n", "profile.yaml")
    rendered = {s: agent_config_for(profile, Site(s, s, "hue", s))["agent"] for s in "abcda"}  # a again, after d
    # 1, True and 1.0 are equal keys to a dict: each still renders as itself
    assert [rendered[s]["n"] for s in "abc"] == ["1", "True", "1.0"]
    assert [rendered[s]["upper"] for s in "abc"] == ["1-a", "TRUE-b", "1.0-c"]
    assert [rendered[s]["host"] for s in "abcd"] == ["dc.example"] * 3 + ["other.example"]
