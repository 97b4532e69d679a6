"""deploy/: every shipped file checked by the tool its users will run on it.

promtool (config, rules, rule unit tests), amtool (config, routes, templates),
systemd-analyze (verify, offline security score), hadolint and docker-compose
(Dockerfiles, compose file), ansible-playbook --syntax-check and ansible-lint,
shellcheck, and the project's own check-config commands on the configs the
deployment ships. A missing tool skips locally and fails under CI=true.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from testsupport.peers._base import require_binary

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
PROM = DEPLOY / "prometheus"
AM = DEPLOY / "alertmanager"
VENV_BIN = Path(sys.executable).parent
SEVERITIES = {"critical", "warning", "info"}


def run(argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False,
                          env={**os.environ, **(env or {})})


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"{' '.join(result.args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def venv_tool(name: str) -> str:
    return require_binary(str(VENV_BIN / name))


def rule_groups() -> list[dict]:
    return [g for f in sorted((PROM / "rules").glob("*.yml")) for g in yaml.safe_load(f.read_text())["groups"]]


# -- Prometheus --------------------------------------------------------------------------


def test_promtool_accepts_the_scrape_config_and_its_rule_files(tmp_path):
    import shutil
    shutil.copytree(PROM, tmp_path / "prometheus")
    (tmp_path / "prometheus" / "secrets").mkdir()
    (tmp_path / "prometheus" / "secrets" / "commune-collector.token").write_text("cmo_token-made-at-install\n")  # a secret
    out = ok(run([require_binary("promtool"), "check", "config", "prometheus.yml"], cwd=tmp_path / "prometheus"))
    assert "SUCCESS: 2 rule files found" in out


def test_promtool_accepts_every_rule_file():
    files = sorted(str(p) for p in (PROM / "rules").glob("*.yml"))
    out = ok(run([require_binary("promtool"), "check", "rules", *files]))
    assert out.count("SUCCESS") == len(files)


def test_promtool_rule_unit_tests_pass():
    files = sorted(p.name for p in (PROM / "tests").glob("*_test.yml"))
    assert len(files) >= 5
    out = ok(run([require_binary("promtool"), "test", "rules", *files], cwd=PROM / "tests"))
    assert out.count("SUCCESS") == len(files) and "FAILED" not in out


def test_every_rule_has_a_unit_test_that_expects_it():
    """Each alert is expected to fire in at least one test; each recording rule is queried in one."""
    fired: set[str] = set()
    queried: set[str] = set()
    for path in (PROM / "tests").glob("*_test.yml"):
        for case in yaml.safe_load(path.read_text())["tests"]:
            fired |= {t["alertname"] for t in case.get("alert_rule_test", []) if t.get("exp_alerts")}
            queried |= {t["expr"].strip() for t in case.get("promql_expr_test", [])}
    alerts = {r["alert"] for g in rule_groups() for r in g["rules"] if "alert" in r}
    records = {r["record"] for g in rule_groups() for r in g["rules"] if "record" in r}
    assert alerts - fired == set(), "alerts no unit test expects to fire"
    assert records - queried == set(), "recording rules no unit test queries"


def test_every_alert_routes_and_explains_itself():
    """Labels Alertmanager routes on, and the runbook text on-call reads, on every alert."""
    for group in rule_groups():
        for rule in (r for r in group["rules"] if "alert" in r):
            name = rule["alert"]
            assert rule["labels"]["severity"] in SEVERITIES, name
            assert rule["labels"]["service"] == "commune-monitor" and rule["labels"]["source"] == "prometheus", name
            assert rule["labels"].get("item"), name
            for key in ("summary", "description", "runbook"):
                assert len(rule["annotations"].get(key, "")) > 20, f"{name}: annotation {key} missing or empty"
            assert "for" in rule, f"{name}: an alert without for: pages on one bad scrape"


# -- Alertmanager ----------------------------------------------------------------------------


def test_amtool_accepts_the_alertmanager_config():
    out = ok(run([require_binary("amtool"), "check-config", "alertmanager.yml"], cwd=AM))
    assert "1 templates" in out and "SUCCESS" in out


@pytest.mark.parametrize(("labels", "receiver"), [
    ({"province": "ha-noi", "severity": "critical", "site": "ha-noi-ba-dinh"}, "ha-noi-oncall-critical"),
    ({"province": "ha-noi", "severity": "warning", "site": "ha-noi-ba-dinh"}, "ha-noi-oncall"),
    ({"province": "ho-chi-minh", "severity": "critical"}, "ho-chi-minh-oncall-critical"),
    ({"province": "da-nang", "severity": "warning"}, "central-region-oncall"),
    ({"province": "ca-mau", "severity": "warning"}, "national-oncall"),
    ({"province": "ca-mau", "severity": "critical"}, "national-oncall-critical"),
    ({"severity": "critical"}, "national-oncall-critical"),
    ({"severity": "critical", "item": "platform", "alertname": "CommuneCollectorDown"}, "national-platform"),
    ({"province": "ha-noi", "severity": "info"}, "national-tickets"),
])
def test_alerts_route_per_province_and_severity(labels, receiver):
    argv = [require_binary("amtool"), "config", "routes", "test", "--config.file=alertmanager.yml",
            *(f"{k}={v}" for k, v in labels.items())]
    result = run(argv, cwd=AM)
    ok(result)
    assert result.stdout.strip() == receiver


def test_notification_template_names_site_evidence_and_runbook(tmp_path):
    """Vietnamese by default, names not slugs, Vietnam time with its zone, the commune's page; English too."""
    base = {"status": "firing", "fingerprint": "1", "endsAt": "0001-01-01T00:00:00Z"}
    data = {"receiver": "ha-noi-oncall-critical", "status": "firing", "externalURL": "http://am",
            "groupLabels": {"province": "ha-noi", "site": "ha-noi-ba-dinh"}, "commonAnnotations": {},
            "commonLabels": {"site": "ha-noi-ba-dinh", "province": "ha-noi"},
            "alerts": [{**base, "generatorURL": "http://status.test/s/ha-noi-ba-dinh",
                        "startsAt": "2025-07-01T20:00:00Z",
                        "labels": {"alertname": "CommuneSiteRegressed", "site": "ha-noi-ba-dinh",
                                   "province": "ha-noi", "severity": "critical", "item": "overall"},
                        "annotations": {"summary": "Phường Ba Đình (ha-noi) fell back from completed",
                                        "site_name": "Phường Ba Đình", "province_name": "Hà Nội",
                                        "page_url": "http://status.test/s/ha-noi-ba-dinh",
                                        "what_vi": "Tỷ lệ mất gói: đo được 12,3% trong 24 giờ, ngưỡng < 1%",
                                        "what_en": "loss 12.3% over 24h, threshold < 1%"}},
                       {**base, "fingerprint": "2", "generatorURL": "http://prom/graph",
                        "startsAt": "2025-07-01T08:00:00Z",
                        "labels": {"alertname": "CommuneLinkDown", "site": "ha-noi-ba-dinh", "province": "ha-noi",
                                   "severity": "critical", "item": "network", "link": "fiber", "role": "primary"},
                        "annotations": {"summary": "ha-noi-ba-dinh (ha-noi): primary link fiber is down",
                                        "description": "No target of link fiber has answered for 5 minutes.",
                                        "runbook": "1. Call the carrier.\n"}}]}
    (tmp_path / "data.json").write_text(json.dumps(data))

    def render(text: str) -> str:
        return ok(run([require_binary("amtool"), "template", "render", f"--template.glob={AM}/templates/*.tmpl",
                       f"--template.data={tmp_path / 'data.json'}", "--template.text", text]))

    vi = render('{{ template "commune.email.subject" . }}\n{{ template "commune.text" . }}')
    assert vi.startswith("[CẢNH BÁO:2] Phường Ba Đình (Hà Nội): Xã không còn đạt trạng thái hoàn thành")
    for part in ("Chi tiết: Tỷ lệ mất gói: đo được 12,3% trong 24 giờ, ngưỡng < 1%",
                 "Từ lúc: 03:00 02/07/2025 (giờ Việt Nam, UTC+7)",  # 20:00 UTC is 03:00 the next day
                 "Trang của xã: http://status.test/s/ha-noi-ba-dinh", "Mất đường truyền chính (fiber)",
                 "Từ lúc: 15:00 01/07/2025 (giờ Việt Nam, UTC+7)", "[NGHIÊM TRỌNG]"):
        assert part in vi, part
    for english in ("fell back", "FIRING", "UTC\n", "since:", "link fiber is down"):
        assert english not in vi, english
    en = render('{{ template "commune.email.subject.en" . }}\n{{ template "commune.text.en" . }}')
    assert en.startswith("[FIRING:2] Phường Ba Đình (Hà Nội): ")
    for part in ("what failed: loss 12.3% over 24h, threshold < 1%", "since: 15:00 01/07/2025 (Vietnam time, UTC+7)",
                 "commune page: http://status.test/s/ha-noi-ba-dinh", "1. Call the carrier."):
        assert part in en, part


def test_every_shipped_alert_has_vietnamese_words_in_the_template():
    """An alert without its Vietnamese phrase would show its code name to the on-call."""
    template = (AM / "templates" / "commune.tmpl").read_text(encoding="utf-8")
    alerts = {r["alert"] for g in rule_groups() for r in g["rules"] if "alert" in r}
    missing = {name for name in alerts if f'eq $n "{name}"' not in template}
    assert not missing, f"alerts without a Vietnamese phrase in commune.tmpl: {missing}"


# -- systemd ---------------------------------------------------------------------------------


UNITS = {"commune-agent": "/opt/commune-agent/bin/commune-agent",
         "commune-collector": "/opt/commune-collector/bin/commune-collector"}


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_systemd_units_verify_and_score_as_hardened(unit, tmp_path):
    analyze = require_binary("systemd-analyze")
    text = (DEPLOY / "systemd" / f"{unit}.service").read_text()
    # point ExecStart at the real executable so verify can check it (the unit names /opt/...)
    copy = tmp_path / f"{unit}.service"
    copy.write_text(text.replace(UNITS[unit], str(VENV_BIN / unit)))
    ok(run([analyze, "verify", str(copy)], cwd=tmp_path))
    out = ok(run([analyze, "security", "--offline=yes", "--no-pager", str(copy)]))
    score = float(re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out).group(1))
    assert score <= 2.0, out[-2000:]


def unit_settings(unit: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in (DEPLOY / "systemd" / f"{unit}.service").read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def test_only_the_agent_gets_a_capability_and_only_cap_net_raw():
    agent, collector = unit_settings("commune-agent"), unit_settings("commune-collector")
    assert agent["AmbientCapabilities"] == ["CAP_NET_RAW"] and agent["CapabilityBoundingSet"] == ["CAP_NET_RAW"]
    assert collector["AmbientCapabilities"] == [""] and collector["CapabilityBoundingSet"] == [""]
    for unit, settings in (("commune-agent", agent), ("commune-collector", collector)):
        assert settings["User"] == [unit] and settings["NoNewPrivileges"] == ["yes"]
        assert settings["ProtectSystem"] == ["strict"] and settings["ReadWritePaths"] == [f"/var/lib/{unit}"]
        assert settings["ProtectHome"] == ["yes"] and settings["PrivateTmp"] == ["yes"]
        assert "@system-service" in settings["SystemCallFilter"]
        assert settings["ExecStartPre"][0].endswith(f"/bin/{unit} check-config /etc/{unit}/{unit.split('-')[1]}.yaml")


def test_the_ansible_role_ships_the_same_agent_unit():
    role_unit = DEPLOY / "ansible" / "roles" / "commune_agent" / "files" / "commune-agent.service"
    assert role_unit.read_text() == (DEPLOY / "systemd" / "commune-agent.service").read_text()


# -- containers ------------------------------------------------------------------------------


def test_hadolint_passes_both_dockerfiles():
    hadolint = venv_tool("hadolint")
    ok(run([hadolint, "Dockerfile.collector", "Dockerfile.agent"], cwd=DEPLOY / "docker"))


@pytest.mark.parametrize("name", ["Dockerfile.collector", "Dockerfile.agent"])
def test_dockerfiles_are_multi_stage_pinned_non_root_with_a_healthcheck(name):
    text = (DEPLOY / "docker" / name).read_text()
    bases = re.findall(r"(?m)^FROM (\S+)", text)
    assert bases == ["python:3.11-slim-bookworm"] * 2, bases
    assert "COPY --from=build" in text and "HEALTHCHECK" in text
    assert re.search(r"(?m)^USER 100\d\d:100\d\d$", text)
    ignore = (DEPLOY / "docker" / f"{name}.dockerignore").read_text()
    for line in re.findall(r"(?m)^COPY (?!--from)(\S+)", text):  # everything copied is let through
        assert f"!{line.rstrip('/')}" in ignore or f"!{line}" in ignore, line


def test_compose_file_validates_and_mounts_what_exists():
    compose = require_binary("docker-compose")
    env = {"POSTGRES_PASSWORD": "x", "GRAFANA_ADMIN_PASSWORD": "y"}
    ok(run([compose, "-f", "compose.yaml", "config", "-q"], cwd=DEPLOY / "docker", env=env))
    config = yaml.safe_load(ok(run([compose, "-f", "compose.yaml", "config"], cwd=DEPLOY / "docker", env=env)))
    assert set(config["services"]) == {"collector", "postgres", "prometheus", "alertmanager", "grafana"}
    for service in config["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith("/"):
                assert Path(source).exists(), f"bind mount source {source} does not exist"
    missing = run([compose, "-f", "compose.yaml", "config", "-q"], cwd=DEPLOY / "docker",
                  env={"POSTGRES_PASSWORD": "", "GRAFANA_ADMIN_PASSWORD": ""})
    assert missing.returncode != 0 and "set POSTGRES_PASSWORD" in missing.stderr


def test_the_container_collector_config_passes_check_config(tmp_path):
    # inside the image criteria.yaml sits at /etc/commune-collector/ (Dockerfile COPY, compose mount)
    text = (DEPLOY / "docker" / "collector.yaml").read_text()
    assert "criteria_file: /etc/commune-collector/criteria.yaml" in text
    copy = tmp_path / "collector.yaml"
    copy.write_text(text.replace("/etc/commune-collector/criteria.yaml", str(ROOT / "config" / "criteria.yaml")))
    out = ok(run([str(VENV_BIN / "commune-collector"), "check-config", str(copy)]))
    assert "store PostgreSQL" in out and "remote_write on" in out


def test_the_systemd_collector_config_passes_check_config(tmp_path):
    """deploy/systemd/collector.example.yaml, with its /etc paths pointed at files that exist here."""
    from testsupport.collector import self_signed_cert

    cert, key = self_signed_cert(tmp_path)
    text = (DEPLOY / "systemd" / "collector.example.yaml").read_text()
    for old, new in (("/etc/commune-collector/criteria.yaml", ROOT / "config" / "criteria.yaml"),
                     ("/etc/commune-collector/tls/cert.pem", cert), ("/etc/commune-collector/tls/key.pem", key)):
        assert old in text
        text = text.replace(old, str(new))
    copy = tmp_path / "collector.yaml"
    copy.write_text(text)
    out = ok(run([str(VENV_BIN / "commune-collector"), "check-config", str(copy)]))
    assert "store PostgreSQL" in out and "TLS on" in out and "remote_write on" in out


# -- Ansible and the install script ----------------------------------------------------------


ANSIBLE_ENV = {"ANSIBLE_CONFIG": str(DEPLOY / "ansible" / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
               "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def test_ansible_playbook_syntax_check():
    out = ok(run([venv_tool("ansible-playbook"), "-i", "inventory.example.yml", "--syntax-check", "site.yml"],
                 cwd=DEPLOY / "ansible", env=ANSIBLE_ENV))
    assert "playbook: site.yml" in out


def test_ansible_lint_passes_at_the_production_profile(tmp_path):
    out = ok(run([venv_tool("ansible-lint"), "--offline", "--nocolor", "--profile", "production",
                  "site.yml", "roles", "inventory.example.yml"], cwd=DEPLOY / "ansible",
                 env={**ANSIBLE_ENV, "HOME": str(tmp_path)}, timeout=300))
    assert "Passed: 0 failure(s), 0 warning(s)" in out


def test_install_script_passes_shellcheck_and_has_help():
    shellcheck = require_binary("shellcheck")
    ok(run([shellcheck, str(DEPLOY / "install-agent.sh")]))
    help_text = ok(run(["bash", str(DEPLOY / "install-agent.sh"), "--help"]))
    for option in ("--config", "--token-file", "--root", "--no-systemd", "--wheelhouse"):
        assert option in help_text
    bad = run(["bash", str(DEPLOY / "install-agent.sh"), "--bogus"])
    assert bad.returncode != 0 and "unknown argument: --bogus" in bad.stderr


def test_apt_repository_script_passes_shellcheck_and_refuses_bad_input(tmp_path):
    """deploy/apt/update-repo.sh (tests/test_deb_repo.py runs it for real): each mistake says what is wrong."""
    script = str(DEPLOY / "apt" / "update-repo.sh")
    ok(run([require_binary("shellcheck"), script]))
    usage = run(["sh", script])
    assert usage.returncode == 2 and "usage:" in usage.stderr
    missing = run(["sh", script, str(tmp_path / "bookworm"), "apt@province.example"])
    assert missing.returncode == 2 and f"{tmp_path / 'bookworm'}: no such directory" in missing.stderr
    (tmp_path / "gnupg").mkdir(mode=0o700)
    for tool in ("dpkg-scanpackages", "apt-ftparchive", "gpg"):
        require_binary(tool)
    nokey = run(["sh", script, str(tmp_path), "apt@province.example"], env={"GNUPGHOME": str(tmp_path / "gnupg")})
    assert nokey.returncode == 1 and "no secret key apt@province.example" in nokey.stderr, nokey.stderr


# -- Grafana -----------------------------------------------------------------------------------


def dashboards() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))}


def test_dashboards_speak_vietnamese_name_communes_and_drill_down_to_the_status_page():
    boards = dashboards()
    english = re.compile(r"^(Communes|Provinces|Readiness|Share|Days|Progress|Reports|Sites|Alerts|Verdict|Criteria|"
                         r"Links|Round|Packet|Jitter|Power|Devices|Battery|Mains|UPS|Interface|Probe|Agent)\b")
    for name, board in boards.items():
        for panel in board["panels"]:
            assert not english.match(panel["title"]), f"{name}: English title {panel['title']!r}"
        for variable in board["templating"]["list"]:
            if variable["name"] in ("province", "site"):
                assert "commune_site_info" in variable["query"]["query"] and "(?<text>" in variable["regex"], \
                    f"{name}: ${variable['name']} shows names, not slugs"
    links = json.dumps(boards["national-overview.json"]) + json.dumps(boards["province.json"])
    assert "/d/commune-province?var-province=" in links and "/d/commune-site?var-province=" in links
    assert "${status_url}/s/${__value.raw}" in links
    assert any(link.get("url") == "${status_url}/s/${site}" for link in boards["site.json"]["links"])


def test_grafana_provisioning_points_at_the_dashboards_and_one_datasource():
    provisioning = DEPLOY / "grafana" / "provisioning"
    datasource = yaml.safe_load((provisioning / "datasources" / "commune-prometheus.yml").read_text())["datasources"][0]
    provider = yaml.safe_load((provisioning / "dashboards" / "commune-monitor.yml").read_text())["providers"][0]
    assert datasource["type"] == "prometheus" and provider["type"] == "file"
    boards = dashboards()
    assert set(boards) == {"national-overview.json", "province.json", "site.json"}
    assert len({b["uid"] for b in boards.values()}) == 3
    for name, board in boards.items():
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), name
        variables = {v["name"] for v in board["templating"]["list"]}
        chooser = next(v for v in board["templating"]["list"] if v["name"] == "datasource")
        assert (chooser["type"], chooser["query"]) == ("datasource", "prometheus"), name
        for panel in (p for p in board["panels"] if p["type"] != "row"):
            assert panel["datasource"]["uid"] == "${datasource}", f"{name}: {panel['title']}"
            assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"] if "datasource" in t)
            assert panel["targets"], f"{name}: {panel['title']} has no query"
            for target in panel["targets"]:
                assert set(re.findall(r"\$(\w+)", target["expr"])) - {"__rate_interval"} <= variables
