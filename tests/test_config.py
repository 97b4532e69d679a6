"""The agent's config: every invalid case gets its exact, located message; valid files load.

Each invalid case is one file under testdata/agent/ (blackbox_exporter's
habit), and one parametrized test holds the message each must produce, with
file, line and field path, so a regression in wording or location shows.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path

import pytest

from commune_agent.checks import build_checks
from commune_agent.config import AgentConfig, load_agent_config
from commune_common.yamlconf import ConfigError, parse_model

ROOT = Path(__file__).resolve().parents[1]
TESTDATA = Path(__file__).with_name("testdata") / "agent"
AGENT = [sys.executable, "-m", "commune_agent.cli"]

# file -> the messages it must produce, in order (one per problem)
INVALID: dict[str, list[str]] = {
    "invalid-unknown-key.yaml": [
        "invalid-unknown-key.yaml:11 links[0].targets[0].cuont: unknown key (check its spelling and indentation)"],
    "invalid-wrong-type.yaml": [
        "invalid-wrong-type.yaml:11 links[0].targets[0].port: 'https': "
        "Input should be a valid integer, unable to parse string as an integer"],
    "invalid-bad-host.yaml": [
        "invalid-bad-host.yaml:10 links[0].targets[0].host: 'dc_hanoi!' is not a host name or IP address"],
    "invalid-bad-duration.yaml": [
        "invalid-bad-duration.yaml:16 links[0].targets[2].interval: '5x' is not a duration (use 30s, 5m)"],
    "invalid-missing-site-id.yaml": [
        "invalid-missing-site-id.yaml:2 site.id: required key is missing"],
    "invalid-duplicate-link-name.yaml": [
        "invalid-duplicate-link-name.yaml:11 links[1].name: 'fiber' is already the name of links[0]"],
    "invalid-duplicate-key.yaml": [
        "invalid-duplicate-key.yaml:12 links[0].targets[0].count: duplicate key"],
    "invalid-timeout-over-interval.yaml": [
        "invalid-timeout-over-interval.yaml:13 links[0].targets[0].timeout: 15s is longer than the interval 10s"],
    "invalid-icmp-round-too-long.yaml": [
        "invalid-icmp-round-too-long.yaml:11 links[0].targets[0].count: 20 echoes need up to 21s but the timeout "
        "is 10s; raise timeout or lower count, packet_interval or echo_timeout"],
    "invalid-yaml-syntax.yaml": [
        "invalid-yaml-syntax.yaml:8: invalid YAML: a '[' opened on this line is not closed with ']'"],
    # YAML syntax in an installer's words, at the line to fix
    "invalid-yaml-tab.yaml": [
        "invalid-yaml-tab.yaml:4: invalid YAML: a tab character: YAML indents with spaces only; "
        "replace the tab with spaces"],
    "invalid-yaml-indent.yaml": [
        "invalid-yaml-indent.yaml:5: invalid YAML: this line is not indented like the lines above it: the keys "
        "of one section start in the same column, and a list's items start with '- ' in the same column "
        "(spaces, never tabs)"],
    "invalid-yaml-list-indent.yaml": [
        "invalid-yaml-list-indent.yaml:8: invalid YAML: this line is not indented like the lines above it: the "
        "keys of one section start in the same column, and a list's items start with '- ' in the same column "
        "(spaces, never tabs)"],
    "invalid-yaml-colon-in-value.yaml": [
        "invalid-yaml-colon-in-value.yaml:5: invalid YAML: a ': ' where none can be: put a value that contains "
        "': ' in quotes (\"...\"); otherwise check this line's indentation and that the line above has its ':'"],
    "invalid-yaml-unclosed-quote.yaml": [
        "invalid-yaml-unclosed-quote.yaml:5: invalid YAML: a quoted value is not closed: add the closing quote "
        "on this line"],
    "invalid-unknown-province.yaml": [
        "invalid-unknown-province.yaml:4 site.province: 'Hanoi' is not one of the 34 province slugs; nearest: "
        "ha-noi (Hà Nội), thanh-hoa (Thanh Hóa), khanh-hoa (Khánh Hòa)"],
    "invalid-bad-site-id.yaml": [
        "invalid-bad-site-id.yaml:3 site.id: 'Ba_Đình' is not a site id: an id has only lower-case letters a-z, "
        "digits and dashes, starts with a letter or digit and is at most 63 characters long (did you mean "
        "ba-dinh?)"],
    "invalid-interval-1ms.yaml": [
        "invalid-interval-1ms.yaml:9 links[0].targets[0].interval: '1ms' is too short: a check runs at most "
        "once a second (interval at least 1s; 30s is usual)"],
    "invalid-push-interval.yaml": [
        "invalid-push-interval.yaml:9 collector.push_interval: '1ms' is too short: each push is a request and "
        "a spool write (at least 1s; 30s is usual)"],
    "invalid-spool-too-small.yaml": [
        "invalid-spool-too-small.yaml:9 collector.spool_max_bytes: 0 is too small: a spool smaller than one "
        "batch drops every batch, the newest too (at least 1MiB; 256MiB is usual)"],
    "invalid-listen-address.yaml": [
        "invalid-listen-address.yaml:7 agent.listen: 'localhost' is not host:port (e.g. 127.0.0.1:9469 or [::]:9469)"],
    "invalid-body-regex.yaml": [
        "invalid-body-regex.yaml:11 links[0].targets[0].body_regex: 'Cổng (dịch vụ' is not a valid regular "
        "expression (missing ), unterminated subpattern at position 5)"],
    "invalid-record-type.yaml": [
        "invalid-record-type.yaml:12 links[0].targets[0].record_type: 'AAAAA' is not a DNS record type "
        "(A, AAAA, CNAME, MX, TXT, ...)"],
    "invalid-unknown-probe.yaml": [
        "invalid-unknown-probe.yaml:9 links[0].targets[0].probe: 'pingg' is not one of icmp, tcp, http, dns"],
    "invalid-missing-probe.yaml": [
        "invalid-missing-probe.yaml:9 links[0].targets[0].probe: required key is missing"],
    "invalid-source-address.yaml": [
        "invalid-source-address.yaml:9 links[0].source_address: '10.0.0.256' is not an IP address"],
    "invalid-zero-interval.yaml": [
        "invalid-zero-interval.yaml:7 defaults.interval: '0s' must be longer than 0s"],
    "invalid-defaults-timeout.yaml": [
        "invalid-defaults-timeout.yaml:6 defaults.timeout: 10s is longer than the interval 5s"],
    "invalid-duplicate-target.yaml": [
        "invalid-duplicate-target.yaml:11 links[0].targets[1]: another icmp target of this link is named "
        "'127.0.0.1' (targets[0]); give one a distinct name"],
    "invalid-long-check-id.yaml": [
        "invalid-long-check-id.yaml:9 links[0].targets[0]: its check id 'link/fiber/http/https://dichvucong.examp'... "
        "is longer than 256 characters; give the target a shorter name"],
    "invalid-port-range.yaml": [
        "invalid-port-range.yaml:11 links[0].targets[0].port: 70000: Input should be less than or equal to 65535"],
    "invalid-role.yaml": [
        "invalid-role.yaml:8 links[0].role: 'tertiary': Input should be 'primary', 'backup' or 'other'"],
    "invalid-not-a-mapping.yaml": [
        "invalid-not-a-mapping.yaml:1: the file must be a YAML mapping"],
    "invalid-not-utf8.yaml": [
        "invalid-not-utf8.yaml: cannot read: 'utf-8' codec can't decode byte 0xb0 in position 54: "
        "invalid start byte"],
    "invalid-several-errors.yaml": [
        "invalid-several-errors.yaml:11 links[0].targets[0].interval: 30 is not a duration (use 30s, 5m)",
        "invalid-several-errors.yaml:13 links[0].targets[1].url: 'ftp://example.org/': "
        "URL scheme should be 'http' or 'https'",
        "invalid-several-errors.yaml:16 links[0].targets[2].port: 0: Input should be greater than or equal to 1"],
}

# config/ file pattern -> "module:function" that loads it with its model; every file needs one
CONFIG_LOADERS = {
    "agent*.yaml": "commune_agent.config:load_agent_config",
    "criteria*.yaml": "commune_collector.judge.criteria:load_criteria",
    "collector*.yaml": "commune_collector.settings:load_settings",
}


def test_every_invalid_file_has_a_case() -> None:
    """A file added to testdata without an expected message would test nothing."""
    on_disk = sorted(p.name for p in TESTDATA.glob("invalid-*.yaml"))
    assert on_disk == sorted(INVALID)


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_config_message(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(TESTDATA)  # messages then name the file as the user typed it
    with pytest.raises(ConfigError) as caught:
        load_agent_config(name)
    assert [str(issue) for issue in caught.value.issues] == INVALID[name]


def test_check_config_cli_rejects_with_messages_and_no_traceback() -> None:
    """The command an installer runs: exit 1, one `error:` line per problem, never a traceback."""
    for name, messages in INVALID.items():
        proc = subprocess.run([*AGENT, "check-config", name], cwd=TESTDATA, capture_output=True, text=True,
                              timeout=60, env=_env())
        assert proc.returncode == 1, (name, proc.stderr)
        assert "Traceback" not in proc.stderr + proc.stdout, name
        assert proc.stderr.splitlines() == [f"error: {m}" for m in messages] + [f"{name}: {len(messages)} error(s)"]


def test_check_config_cli_accepts_the_example() -> None:
    proc = subprocess.run([*AGENT, "check-config", "config/agent.example.yaml"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env=_env())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("config/agent.example.yaml: OK, site ha-noi-ba-dinh")
    assert proc.stderr == ""


def test_check_config_cli_missing_file() -> None:
    proc = subprocess.run([*AGENT, "check-config", "no-such-file.yaml"], cwd=TESTDATA, capture_output=True,
                          text=True, timeout=60, env=_env())
    assert proc.returncode == 1
    assert "error: no-such-file.yaml: cannot read: [Errno 2] No such file or directory" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("path", sorted(p.relative_to(ROOT) for p in (ROOT / "config").glob("*.y*ml")),
                         ids=str)
def test_every_config_file_loads_with_its_model(path: Path) -> None:
    """Shipped examples are documentation; a stale one misleads every installer."""
    loaders = [target for pattern, target in CONFIG_LOADERS.items() if fnmatch(path.name, pattern)]
    assert loaders, f"no model known for {path}; add its loader to CONFIG_LOADERS in {Path(__file__).name}"
    module, _, function = loaders[0].partition(":")
    loaded = getattr(importlib.import_module(module), function)(ROOT / path)
    assert loaded is not None


def test_example_config_becomes_checks() -> None:
    cfg = load_agent_config(ROOT / "config" / "agent.example.yaml")
    checks = {c.id: c for c in build_checks(cfg)}
    assert set(checks) >= {"link/fiber/icmp/provincial-dc", "link/fiber/tcp/dc-https",
                           "link/fiber/http/metrics-self", "link/lte/icmp/provincial-dc", "host"}
    backup = checks["link/lte/icmp/provincial-dc"]
    assert backup.interval == 60.0 and backup.timeout == 10.0  # own interval, default timeout
    assert backup.labels == {"link": "lte", "role": "backup", "target": "provincial-dc"}


MINIMAL = """\
site: {id: s1, province: ha-noi, commune: Xã Một}
links:
  - name: lte
    role: backup
    source_address: 192.0.2.7
    interface: wwan0
    targets:
      - {probe: icmp, host: 127.0.0.1, interval: 1m30s, timeout: 5s, count: 3, packet_interval: 500ms}
      - {probe: icmp, name: dc-v6, host: "[::1]"}
"""


def test_durations_hosts_and_binding_are_parsed() -> None:
    cfg = parse_model(AgentConfig, MINIMAL, "m.yaml")
    first, second = build_checks(cfg)[:2]
    assert (first.interval, first.timeout) == (90.0, 5.0)
    assert first.config.packet_interval == 0.5
    assert second.config.host == "::1"  # brackets stripped, address canonical
    assert (first.binding.source_address, first.binding.interface) == ("192.0.2.7", "wwan0")
    assert second.binding == first.binding  # the binding is the link's, for every target on it


def test_empty_file_names_the_missing_section() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_model(AgentConfig, "", "empty.yaml")
    assert [str(i) for i in caught.value.issues] == ["empty.yaml site: required key is missing"]


def test_non_scalar_key_is_an_error_not_a_crash() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_model(AgentConfig, "? [a, b]\n: 1\n", "k.yaml")
    assert [str(i) for i in caught.value.issues] == ["k.yaml:1: a key must be a plain name, not a list or mapping"]


def _env() -> dict[str, str]:
    import os

    return {**os.environ, "PYTHONPATH": str(ROOT)}


# -- check-config is the installer's pre-flight for `run`: the token must be there -------------------------


def _pushing_config(tmp_path: Path, token_file: Path) -> Path:
    config = tmp_path / "agent.yaml"
    config.write_text("site: {id: ha-noi-ba-dinh, province: ha-noi, commune: Phường Ba Đình}\n"
                      "collector:\n  url: https://collector.example\n"
                      f"  token_file: {token_file}\n", encoding="utf-8")
    return config


@pytest.mark.parametrize("content", [None, "", "  \n"])
def test_check_config_refuses_a_missing_or_empty_token_file(tmp_path: Path, content: str | None) -> None:
    token = tmp_path / "token"
    if content is not None:
        token.write_text(content)
    config = _pushing_config(tmp_path, token)
    out = subprocess.run([*AGENT, "check-config", str(config)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    problem = "no such file" if content is None else "is empty"
    assert f"{config}:4 collector.token_file: {token}" in out.stderr and problem in out.stderr
    assert "nothing is pushed" in out.stderr
    # an installer that puts the token in place after the config checks the config alone
    alone = subprocess.run([*AGENT, "check-config", "--without-token", str(config)], capture_output=True,
                           text=True, timeout=60)
    assert alone.returncode == 0, alone.stderr


def test_check_config_with_its_token_says_where_it_pushes(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("cm_0123456789ab_" + "x" * 43 + "\n")
    out = subprocess.run([*AGENT, "check-config", str(_pushing_config(tmp_path, token))], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "pushes to https://collector.example" in out.stdout
    assert "x" * 43 not in out.stdout + out.stderr


def test_check_config_without_collector_says_nothing_is_pushed() -> None:
    out = subprocess.run([*AGENT, "check-config", str(ROOT / "config" / "agent.example.yaml")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "pushes nothing (no collector: section)" in out.stdout


def test_the_agents_province_list_is_the_collectors() -> None:
    assert (ROOT / "common" / "provinces.csv").read_bytes() == \
        (ROOT / "collector" / "data" / "provinces.csv").read_bytes()
