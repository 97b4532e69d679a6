"""Criteria files and the expression language: every mistake gets its exact, located message.

Each invalid case is one file under testdata/criteria/ and one entry below
with the messages it must produce (file, line, field path), so a change in
wording or location shows up here, as for the agent's config.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from commune_collector.judge.criteria import DEFAULT_CRITERIA, load_criteria, parse_criteria
from commune_collector.judge.expr import ExprError, parse_expression
from commune_collector.judge.stats import STATISTICS
from commune_common.yamlconf import ConfigError

TESTDATA = Path(__file__).with_name("testdata") / "criteria"
E = "criteria[1].expr: "

INVALID: dict[str, list[str]] = {
    "invalid-arity.yaml": [
        f"invalid-arity.yaml:17 {E}'mean(icmp_loss_ratio) < 1%': mean() takes mean(metric, window); "
        "got 1 argument(s)"],
    "invalid-done-share.yaml": [
        "invalid-done-share.yaml:7 items.power.done_share: '150%' must be between 0 and 1 (or 0% and 100%)"],
    "invalid-duplicate-id.yaml": [
        "invalid-duplicate-id.yaml:13 criteria[1].id: 'primary-availability' is already the id of criteria[0]"],
    "invalid-item-without-criteria.yaml": [
        "invalid-item-without-criteria.yaml:5 items.power: no criterion decides this item; add one or remove "
        "the item"],
    "invalid-match.yaml": [
        "invalid-match.yaml:17 criteria[1].match: 'all': Input should be 'each' or 'any'"],
    "invalid-metric-label.yaml": [
        f"invalid-metric-label.yaml:17 {E}'mean(snmp_interface_up{{ifname=\"eth0\"}}, 1h) >= 1': "
        "snmp_interface_up: label 'ifname' is not kept in the evidence summaries (only {stat=\"...\"} is); "
        "judge per-interface detail in Prometheus"],
    "invalid-metrics-prefix.yaml": [
        f"invalid-metrics-prefix.yaml:17 {E}'mean(commune_icmp_loss_ratio, 24h) < 1%': write the sample name "
        "without the /metrics prefix: 'icmp_loss_ratio'"],
    "invalid-missing-select.yaml": [
        "invalid-missing-select.yaml:13 criteria[1].select: last() reads checks: say which, "
        "e.g. select: {probe: icmp, role: primary}"],
    "invalid-no-comparison.yaml": [
        f"invalid-no-comparison.yaml:17 {E}'last(power_on_battery)': expected a comparison "
        "(>=, >, <=, <, ==, !=) at column 23, found the end"],
    "invalid-ratio-over-one.yaml": [
        f"invalid-ratio-over-one.yaml:17 {E}'availability(24h) >= 99': availability() is a ratio between "
        "0 and 1: write 99% or 0.99"],
    "invalid-select-site-statistic.yaml": [
        "invalid-select-site-statistic.yaml:16 criteria[1].select: report_age() is about the whole site; "
        "remove select"],
    "invalid-several-errors.yaml": [
        "invalid-several-errors.yaml:18 criteria[2].id: 'mains' is already the id of criteria[1]",
        "invalid-several-errors.yaml:19 criteria[2].item: unknown item 'pwr' (items: network, power)"],
    "invalid-stable-period.yaml": [
        "invalid-stable-period.yaml:2 stable_period: '1x' is not a duration (use 30s, 5m)"],
    "invalid-trailing-words.yaml": [
        f"invalid-trailing-words.yaml:17 {E}'last(power_on_battery) == 0 and last(power_low_battery) == 0': "
        "expected the end of the expression at column 29, found 'and'"],
    "invalid-unit-mismatch-seconds.yaml": [
        f"invalid-unit-mismatch-seconds.yaml:17 {E}'p95(icmp_rtt_seconds{{stat=\"avg\"}}, 24h) < 1%': "
        "unit mismatch: p95(icmp_rtt_seconds{stat=\"avg\"}) is in seconds but the threshold '1%' is a ratio "
        "(write 150ms, 30s, 15m)"],
    "invalid-unit-mismatch.yaml": [
        f"invalid-unit-mismatch.yaml:17 {E}'mean(icmp_loss_ratio, 24h) < 150ms': unit mismatch: "
        "mean(icmp_loss_ratio) is a ratio but the threshold '150ms' is a duration (write 1% or 0.01)"],
    "invalid-unknown-item.yaml": [
        "invalid-unknown-item.yaml:14 criteria[1].item: unknown item 'online-meeting' (items: network, power)"],
    "invalid-unknown-key.yaml": [
        "invalid-unknown-key.yaml:17 criteria[1].requried: unknown key (check its spelling and indentation)"],
    "invalid-unknown-statistic.yaml": [
        f"invalid-unknown-statistic.yaml:17 {E}'p96(power_battery_runtime_seconds, 1h) >= 15m': unknown "
        "statistic 'p96' (known: availability, last, last_ok_age, max, mean, min, ok_rounds, p50, p90, p95, "
        "p99, report_age)"],
    "invalid-unknown-unit.yaml": [
        f"invalid-unknown-unit.yaml:17 {E}'min(power_battery_runtime_seconds, 1h) >= 15mn': '15mn' has an "
        "unknown unit (use %, ms, s, m, h, d)"],
    "invalid-window-too-long.yaml": [
        f"invalid-window-too-long.yaml:17 {E}'availability(30d) >= 99%': availability(): window '30d' is "
        "longer than the evidence kept (7d)"],
    "invalid-window-unit.yaml": [
        f"invalid-window-unit.yaml:17 {E}'availability(24) >= 99%': availability(): window '24' is not a "
        "duration (use 1h, 24h, 7d)"],
    "invalid-zero-window.yaml": [
        f"invalid-zero-window.yaml:17 {E}'availability(0s) >= 99%': availability(): window '0s' must be "
        "longer than 0s"],
}


def test_every_invalid_file_has_a_case() -> None:
    """A file added to testdata without an expected message would test nothing."""
    assert sorted(p.name for p in TESTDATA.glob("invalid-*.yaml")) == sorted(INVALID)


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_criteria_message(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(TESTDATA)
    with pytest.raises(ConfigError) as caught:
        load_criteria(name)
    assert [str(issue) for issue in caught.value.issues] == INVALID[name]


def test_shipped_criteria_cover_the_readiness_items() -> None:
    """config/criteria.yaml: every readiness item the meetings count, with the thresholds of the brief."""
    config = load_criteria(DEFAULT_CRITERIA)
    assert set(config.items) == {"network", "backup-link", "power", "devices", "online-meeting", "reporting"}
    exprs = {c.id: c.expr for c in config.criteria}
    assert (exprs["primary-availability"].stat, exprs["primary-availability"].threshold) == ("availability", 0.99)
    assert (exprs["primary-rtt"].stat, exprs["primary-rtt"].op, exprs["primary-rtt"].threshold) == ("p95", "<", 0.15)
    assert (exprs["primary-loss"].metric, exprs["primary-loss"].threshold) == ("icmp_loss_ratio", 0.01)
    assert exprs["ups-runtime"].threshold == 900.0 and exprs["ups-runtime"].op == ">="
    assert exprs["video-jitter"].threshold == pytest.approx(0.03)
    assert exprs["agent-reporting"].stat == "report_age" and exprs["agent-reporting"].threshold == 60.0
    assert config.history_retention == 35 * 86400.0
    assert all(c.title.vi and c.title.en for c in config.criteria)


@pytest.mark.parametrize("text, stat, metric, window, op, threshold, unit", [
    ("availability(24h) >= 99%", "availability", None, 86400.0, ">=", 0.99, "ratio"),
    ('p95(icmp_rtt_seconds{stat="avg"}, 24h) < 150ms', "p95", 'icmp_rtt_seconds{stat="avg"}', 86400.0, "<", 0.15,
     "seconds"),
    ("mean(icmp_loss_ratio, 24h) < 1%", "mean", "icmp_loss_ratio", 86400.0, "<", 0.01, "ratio"),
    ("mean(icmp_loss_ratio,24h)<0.01", "mean", "icmp_loss_ratio", 86400.0, "<", 0.01, "ratio"),
    ("max(icmp_jitter_seconds, 1h) < 30ms", "max", "icmp_jitter_seconds", 3600.0, "<", 0.03, "seconds"),
    ("last(power_on_battery) == 0", "last", "power_on_battery", 3600.0, "==", 0.0, "bool"),
    ("last(power_on_battery, 10m) != 1", "last", "power_on_battery", 600.0, "!=", 1.0, "bool"),
    ("min(power_battery_runtime_seconds, 1h) >= 15m", "min", "power_battery_runtime_seconds", 3600.0, ">=", 900.0,
     "seconds"),
    ("last_ok_age() < 24h", "last_ok_age", None, 86400.0, "<", 86400.0, "seconds"),
    ("ok_rounds(1h30m) >= 1", "ok_rounds", None, 5400.0, ">=", 1.0, "count"),
    ("report_age() < 1m", "report_age", None, None, "<", 60.0, "seconds"),
])
def test_expressions_parse_to_their_parts(text: str, stat: str, metric: str | None, window: float | None, op: str,
                                          threshold: float, unit: str) -> None:
    expr = parse_expression(text)
    assert (expr.stat, expr.metric, expr.window, expr.op, expr.unit) == (stat, metric, window, op, unit)
    assert expr.threshold == pytest.approx(threshold)


@pytest.mark.parametrize("text", ["__import__('os').system('true') > 0", "availability(24h) >= 99%; x",
                                  "availability(24h) >= 99% or 1", "(availability(24h)) >= 1%", "1 < 2",
                                  "availability(24h) >= -1%", 'mean(x{stat="a", stat="b"}, 1h) < 1'])
def test_anything_but_the_grammar_is_refused(text: str) -> None:
    """Never eval: code, extra clauses, parentheses and negative thresholds are all syntax errors."""
    with pytest.raises(ExprError):
        parse_expression(text)


def test_comparisons_hold_as_written() -> None:
    assert parse_expression("availability(24h) >= 99%").holds(0.99)
    assert not parse_expression("availability(24h) > 99%").holds(0.99)
    assert parse_expression("mean(icmp_loss_ratio, 1h) < 1%").holds(0.009)
    assert not parse_expression("last(power_on_battery) == 0").holds(1.0)


def test_every_statistic_is_documented_in_the_shipped_file() -> None:
    """The header of config/criteria.yaml is the user's reference: every registered statistic is there."""
    header = DEFAULT_CRITERIA.read_text(encoding="utf-8").split("\nstable_period")[0]
    for name in STATISTICS:
        if name.startswith("p") and name[1:].isdigit():
            name = "p95"
        assert f"{name}(" in header, name


def test_select_globs_lists_and_labels() -> None:
    config = parse_criteria("""
items: {devices: {title: {en: D, vi: T}}}
criteria:
  - id: devices-up
    item: devices
    title: {en: D, vi: T}
    select: {device: ["video-*", camera], required: "true"}
    expr: availability(24h) >= 95%
""")
    crit = config.criteria[0]
    assert crit.selects("icmp", "device/video-conference/icmp", {"device": "video-conference", "required": "true"})
    assert crit.selects("icmp", "device/camera/icmp", {"device": "camera", "required": "true"})
    assert not crit.selects("icmp", "device/camera/icmp", {"device": "camera", "required": "false"})
    assert not crit.selects("icmp", "device/printer/icmp", {"device": "printer", "required": "true"})
    assert not crit.selects("icmp", "link/fiber/icmp/dc", {"role": "primary"})


def test_check_criteria_cli(tmp_path: Path) -> None:
    """`commune-collector check-criteria`: exit 0 on the shipped file, 1 with located messages otherwise."""
    ok = subprocess.run([sys.executable, "-m", "commune_collector.cli", "check-criteria", str(DEFAULT_CRITERIA)],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "10 criteria over 6 items" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "commune_collector.cli", "check-criteria", "invalid-unit-mismatch.yaml"],
                         capture_output=True, text=True, timeout=60, cwd=TESTDATA)
    assert bad.returncode == 1
    assert INVALID["invalid-unit-mismatch.yaml"][0] in bad.stderr
    assert "Traceback" not in bad.stderr
