"""/metrics: families computed at scrape time from the latest results, named the Prometheus way.

Unit tests use a fresh CollectorRegistry and ``get_sample_value``; the lint
tests run ``promtool check metrics`` on the real /metrics of a running agent
and on an exposition holding every family the probe registry documents.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from commune_agent import __version__
from commune_agent.checks import Check
from commune_agent.exposition import METRIC_DOCS, AgentCollector, LatestResults
from commune_agent.probes.base import ProbeResult, sample
from commune_agent.registry import PROBES
from commune_agent.scheduler import SchedulerStats
from testsupport.peers._base import free_tcp_port, http_get, require_binary, wait_until

SITE = "ha-noi-ba-dinh"


def _check(kind: str, check_id: str, **labels: str) -> Check:
    spec = PROBES[kind]
    config = spec.config.model_construct(probe=kind)  # /metrics reads the check's id and labels only
    return Check(id=check_id, spec=spec, config=config, interval=30.0, timeout=10.0, labels=labels)


def _registry(stats: SchedulerStats | None = None, configured: int | None = None) -> tuple[CollectorRegistry, LatestResults]:
    registry, latest = CollectorRegistry(), LatestResults(SITE)
    registry.register(AgentCollector(latest, stats, configured=configured))
    return registry, latest


def test_probe_results_become_labelled_families() -> None:
    registry, latest = _registry()
    icmp = _check("icmp", "link/fiber/icmp/dc", link="fiber", role="primary", target="dc")
    latest.record(icmp, ProbeResult(ok=True, duration_s=0.81, ts=1_750_000_000.0, samples=(
        sample("icmp_rtt_seconds", 0.0123, stat="avg"), sample("icmp_loss_ratio", 0.2),
        sample("icmp_packets_sent", 5))))
    labels = {"site": SITE, "check": "link/fiber/icmp/dc", "probe": "icmp", "link": "fiber", "role": "primary",
              "target": "dc"}
    value = registry.get_sample_value
    assert value("commune_probe_success", labels) == 1.0
    assert value("commune_probe_duration_seconds", labels) == 0.81
    assert value("commune_probe_last_round_timestamp_seconds", labels) == 1_750_000_000.0
    assert value("commune_icmp_rtt_seconds", labels | {"stat": "avg"}) == 0.0123
    assert value("commune_icmp_loss_ratio", labels) == 0.2
    assert value("commune_icmp_packets_sent", labels) == 5.0


def test_a_failed_round_reads_zero_and_replaces_the_last() -> None:
    registry, latest = _registry()
    check = _check("tcp", "link/lte/tcp/dc", link="lte", role="backup", target="dc")
    latest.record(check, ProbeResult(ok=True, samples=(sample("tcp_connect_seconds", 0.004),)))
    latest.record(check, ProbeResult(ok=False, reason="connect failed"))
    labels = {"site": SITE, "check": "link/lte/tcp/dc", "probe": "tcp", "link": "lte", "role": "backup", "target": "dc"}
    assert registry.get_sample_value("commune_probe_success", labels) == 0.0
    assert registry.get_sample_value("commune_tcp_connect_seconds", labels) is None  # no stale value


def test_counters_end_in_total_and_carry_their_type() -> None:
    registry, latest = _registry()
    host = _check("host", "host", target="host")
    latest.record(host, ProbeResult(ok=True, samples=(
        sample("host_network_receive_bytes_total", 1234, interface="eth0"),)))
    assert registry.get_sample_value("commune_host_network_receive_bytes_total", {
        "site": SITE, "check": "host", "probe": "host", "target": "host", "interface": "eth0"}) == 1234
    text = generate_latest(registry).decode()
    assert "# TYPE commune_host_network_receive_bytes_total counter" in text


def test_agent_health_families() -> None:
    stats = SchedulerStats()
    stats.rounds = {("link/fiber/icmp/dc", True): 7, ("link/fiber/icmp/dc", False): 2}
    stats.skipped = {"link/fiber/icmp/dc": 3}
    for lag in (0.001, 0.003):
        stats.record_lag(lag)
    registry, _ = _registry(stats, configured=5)
    value = registry.get_sample_value
    assert value("commune_agent_build_info", {"version": __version__, "python": _python()}) == 1.0
    assert value("commune_agent_checks") == 5.0  # configured, even before any round ran
    assert value("commune_agent_probe_rounds_total", {"check": "link/fiber/icmp/dc", "result": "success"}) == 7
    assert value("commune_agent_probe_rounds_total", {"check": "link/fiber/icmp/dc", "result": "failure"}) == 2
    assert value("commune_agent_skipped_rounds_total", {"check": "link/fiber/icmp/dc"}) == 3
    assert value("commune_agent_scheduler_lag_seconds_count") == 2
    assert abs(value("commune_agent_scheduler_lag_seconds_sum") - 0.004) < 1e-12
    assert value("commune_agent_scheduler_lag_max_seconds") == 0.003


def test_an_undocumented_sample_is_still_exposed_as_a_gauge() -> None:
    registry, latest = _registry()
    latest.record(_check("host", "host", target="host"), ProbeResult(ok=True, samples=(sample("custom_thing", 4),)))
    assert "# TYPE commune_custom_thing gauge" in generate_latest(registry).decode()


def test_every_documented_family_passes_promtool_lint() -> None:
    """One sample of every family every registered probe documents, plus the agent's own."""
    promtool = require_binary("promtool")
    stats = SchedulerStats()
    stats.rounds[("c", True)] = 1
    stats.skipped["c"] = 1
    stats.record_lag(0.01)
    registry, latest = _registry(stats, configured=len(PROBES))
    for kind, spec in PROBES.items():
        check = Check(id=f"x/{kind}", spec=spec, config=None, interval=30.0, timeout=10.0,  # type: ignore[arg-type]
                      labels={"link": "fiber", "role": "primary", "target": kind})
        latest.record(check, ProbeResult(ok=True, samples=tuple(
            sample(doc.name, 1.0, **{label: "a" for label in doc.labels}) for doc in spec.metrics)))
    exposition = generate_latest(registry)
    documented = {f"commune_{d.name}" for spec in PROBES.values() for d in spec.metrics} | {
        f"commune_{d.name}" for d in METRIC_DOCS}
    exposed = {line.split()[2] for line in exposition.decode().splitlines() if line.startswith("# TYPE")}
    assert documented <= exposed, documented - exposed
    _promtool_clean(promtool, exposition)


def test_other_modules_documented_families_pass_promtool_lint() -> None:
    """Families other agent modules declare in METRIC_DOCS (push, spool, ...), one sample each."""
    from prometheus_client.core import Metric
    from prometheus_client.registry import Collector

    from commune_agent.metricsdoc import _own_doc_modules

    docs = [doc for _, module_docs in _own_doc_modules() for doc in module_docs]

    class Synthetic(Collector):
        def collect(self):  # type: ignore[no-untyped-def]
            for doc in docs:
                base = doc.name.removesuffix("_total") if doc.type == "counter" else doc.name
                family = Metric(f"commune_{base}", doc.help, doc.type)
                labels = {label: "a" for label in doc.labels}
                suffixes = {"counter": ("_total",), "summary": ("_sum", "_count")}.get(doc.type, ("",))
                for suffix in suffixes:
                    family.add_sample(family.name + suffix, labels, 1.0)
                yield family

    registry = CollectorRegistry()
    registry.register(Synthetic())
    _promtool_clean(require_binary("promtool"), generate_latest(registry))


def test_real_agent_metrics_pass_promtool(tmp_path: Path) -> None:
    """The /metrics a running agent serves, after real rounds of icmp, tcp, http and host."""
    promtool = require_binary("promtool")
    port = free_tcp_port()
    config = {
        "site": {"id": SITE, "province": "ha-noi", "commune": "Phường Ba Đình"},
        "agent": {"listen": f"127.0.0.1:{port}", "state_dir": str(tmp_path / "state")},
        "defaults": {"interval": "2s", "timeout": "1s"},
        "links": [{"name": "fiber", "targets": [
            {"probe": "icmp", "name": "dc", "host": "127.0.0.1", "count": 2, "packet_interval": "50ms",
             "echo_timeout": "500ms"},
            {"probe": "tcp", "name": "self", "host": "127.0.0.1", "port": port},
            {"probe": "http", "name": "self", "url": f"http://127.0.0.1:{port}/metrics"}]},
            {"name": "lte", "role": "backup", "targets": [
                {"probe": "icmp", "name": "dc", "host": "::1", "count": 2, "packet_interval": "50ms",
                 "echo_timeout": "500ms"}]}],
    }
    path = tmp_path / "agent.yaml"
    path.write_text(json.dumps(config))
    proc = subprocess.Popen([*_agent(), "run", "-c", str(path), "--no-push"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        def every_check_ran() -> bytes | None:
            status, body = http_get(f"http://127.0.0.1:{port}/metrics", timeout=1)
            return body if status == 200 and body.count(b"commune_probe_success{") == 5 else None

        body = wait_until(every_check_ran, timeout=30, interval=0.2, what="a round of every check on /metrics",
                          abort=lambda: f"agent exited {proc.returncode}" if proc.poll() is not None else None)
    finally:
        proc.terminate()
        proc.wait(10)
    text = body.decode()
    for family in ("commune_icmp_rtt_seconds", "commune_tcp_connect_seconds", "commune_http_duration_seconds",
                   "commune_host_cpu_usage_ratio", "commune_agent_probe_rounds_total"):
        assert f"# TYPE {family} " in text
    _promtool_clean(promtool, body)


def _promtool_clean(promtool: str, exposition: bytes) -> None:
    lint = subprocess.run([promtool, "check", "metrics"], input=exposition, capture_output=True, timeout=30)
    assert lint.returncode == 0 and not lint.stdout.strip() and not lint.stderr.strip(), (
        lint.stdout.decode() + lint.stderr.decode())


def _agent() -> list[str]:
    script = Path(sys.executable).with_name("commune-agent")
    return [str(script)] if script.exists() else [sys.executable, "-m", "commune_agent.cli"]


def _python() -> str:
    import platform

    return platform.python_version()

