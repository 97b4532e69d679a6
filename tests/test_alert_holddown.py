"""One hold-down per alert, whichever side sends it.

The collector's verdict alerts and the Prometheus rules of the same name wait
the same time (the rule's ``for:``) before anything is sent; a cause that
clears within it is never sent at all. ``AlertRule.hold_s`` is checked here
against the shipped rules so the two cannot drift apart.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from commune_collector.alerting.rules import RULES, AlertBook
from commune_common.units import parse_duration
from tests.test_alerting import EXTERNAL, LOSS_BAD, REGRESSION, T0, Change, criterion, verdict

RULES_FILE = Path(__file__).resolve().parents[1] / "deploy" / "prometheus" / "rules" / "commune-alerts.yml"


def prometheus_for() -> dict[str, set[float]]:
    out: dict[str, set[float]] = {}
    for group in yaml.safe_load(RULES_FILE.read_text())["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                out.setdefault(rule["alert"], set()).add(parse_duration(rule.get("for", "0s")))
    return out


@pytest.mark.parametrize("kind", sorted(RULES))
def test_the_collector_holds_each_alert_as_long_as_its_prometheus_rule(kind):
    rule = RULES[kind]
    assert prometheus_for()[rule.alertname] == {rule.hold_s}, \
        f"{rule.alertname}: the collector's hold-down differs from the rule's for:"


def test_a_regression_is_sent_only_after_the_hold_down_and_keeps_its_start():
    book = AlertBook(EXTERNAL, hold_down=True)
    bad = [verdict("hn-001", "not_completed", [LOSS_BAD], regressions=[REGRESSION])]
    assert book.apply([Change("hn-001", "ha-noi", "regression")], bad, T0) == []
    assert book.apply([], bad, T0 + RULES["regression"].hold_s - 1) == []
    assert book.firing == {} and len(book.pending) == 1
    (alert,) = book.apply([], bad, T0 + RULES["regression"].hold_s)
    assert alert.starts_at == T0, "startsAt says when it began, not when the hold-down ended"
    assert alert.payload(T0 + 300, 240)["annotations"]["page_url"] == f"{EXTERNAL}/s/hn-001"


def test_a_cause_that_clears_within_the_hold_down_is_never_sent():
    book = AlertBook(EXTERNAL, hold_down=True)
    ups = criterion("mains-power", "power", False)
    on_mains = criterion("mains-power", "power", True)
    assert book.apply([Change("hn-001", "ha-noi", "on_battery", "mains-power")],
                      [verdict("hn-001", "not_completed", [ups])], T0) == []
    assert book.apply([Change("hn-001", "ha-noi", "on_mains", "mains-power")],
                      [verdict("hn-001", "completed", [on_mains])], T0 + 120) == []
    assert book.apply([], [verdict("hn-001", "completed", [on_mains])], T0 + 3600) == []
    assert book.pending == {} and book.firing == {}


def test_notifications_carry_names_and_what_failed_in_both_languages():
    book = AlertBook(EXTERNAL)
    crit = {**LOSS_BAD, "title": {"en": "Loss under 1%", "vi": "Tỷ lệ mất gói dưới 1%"}, "reason_code": "measured",
            "reason_params": {"what": {"en": "loss", "vi": "Tỷ lệ mất gói"}, "value": 0.123, "unit": "ratio",
                              "op": "<", "threshold": 0.01, "window_s": 86400.0}}
    (alert,) = book.apply([Change("hn-001", "ha-noi", "regression")],
                          [verdict("hn-001", "not_completed", [crit], regressions=[REGRESSION])], T0)
    ann = alert.annotations
    assert (ann["site_name"], ann["province_name"]) == ("Xã hn-001", "Hà Nội")
    assert ann["summary_vi"] == "Xã hn-001 (Hà Nội) không còn đạt trạng thái hoàn thành"
    assert ann["what_vi"] == "Tỷ lệ mất gói: đo được 12,3% trong 24 giờ, ngưỡng < 1%"
    assert ann["what_en"] == "loss 12.3% over 24h, threshold < 1%"
