"""A real Alertmanager delivers a Vietnamese notification, by webhook and by e-mail, only after the hold-down.

The collector's notifier (its own sender thread, real HTTP) sends the verdict
of a commune failing in the real judge (``tests/web/nation_scenario.py``) to
a real Alertmanager running the shipped templates. Its receiver posts to a
webhook sink and mails a local SMTP sink (aiosmtpd on loopback: no mail
leaves the machine). The notifier's clock is real time plus an offset the
test moves, so the hold-down passes without waiting for it: before the
offset reaches the rule's ``for:`` Alertmanager holds no alert and nobody is
notified; after it, both sinks receive the notification in Vietnamese with
the commune's and province's names, Vietnam time and the commune's page.
"""

from __future__ import annotations

import email
import email.policy
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from commune_collector.alerting import AlertingSettings, AlertmanagerNotifier
from commune_collector.alerting.rules import RULES
from tests.test_deploy_alertmanager import WebhookSink
from testsupport.peers._base import free_tcp_port, wait_until
from testsupport.peers.alertmanager import AlertmanagerPeer
from testsupport.web.nation_scenario import Nation

pytestmark = pytest.mark.slow
TEMPLATES = Path(__file__).resolve().parents[1] / "deploy" / "alertmanager" / "templates"
STATUS = "http://status.test"


class SmtpSink:
    """An SMTP server on loopback that keeps every message it is given."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[email.message.EmailMessage] = []
        sink = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
                sink.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
                return "250 OK"

        self.port = free_tcp_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def close(self) -> None:
        self.controller.stop()


def config(webhook: str, smtp_port: int) -> str:
    return yaml.safe_dump({
        "global": {"resolve_timeout": "5m", "smtp_smarthost": f"127.0.0.1:{smtp_port}",
                   "smtp_from": "commune-monitor@example.test", "smtp_require_tls": False},
        "templates": [str(TEMPLATES / "*.tmpl")],
        "route": {"receiver": "oncall", "group_by": ["province", "site"], "group_wait": "1s",
                  "group_interval": "1s", "repeat_interval": "1h"},
        "receivers": [{"name": "oncall",
                       "webhook_configs": [{"url": webhook, "send_resolved": True}],
                       "email_configs": [{"to": "truc-ha-noi@example.test", "send_resolved": True,
                                          "headers": {"Subject": '{{ template "commune.email.subject" . }}'},
                                          "html": '{{ template "commune.email.html" . }}',
                                          "text": '{{ template "commune.text" . }}'}]}],
    }, allow_unicode=True)


@pytest.fixture(scope="module")
def sinks() -> Iterator[tuple[AlertmanagerPeer, WebhookSink, SmtpSink]]:
    webhook, smtp = WebhookSink(), SmtpSink()
    am = AlertmanagerPeer(config(webhook.url, smtp.port))
    try:
        am.start()
        yield am, webhook, smtp
    finally:
        am.stop()
        webhook.close()
        smtp.close()


def test_a_vietnamese_notification_arrives_only_after_the_hold_down(sinks):
    am, webhook, smtp = sinks
    verdict = Nation().settle().judge.snapshot.verdict("hn-lossy")
    offset = [0.0]
    settings = AlertingSettings(alertmanager_url=am.url, external_url=STATUS, resend_interval="1s")
    notifier = AlertmanagerNotifier(settings, clock=lambda: time.time() + offset[0]).start()
    hold = RULES["regression"].hold_s
    try:
        notifier([{"site": "hn-lossy", "province": "ha-noi", "kind": "regression", "at": time.time(),
                   "criterion": "primary-loss"}], [verdict])
        offset[0] = hold - 30  # the judge's next passes, still inside the hold-down
        notifier([], [verdict])
        resends = notifier.stats["posts_ok"]
        wait_until(lambda: _sender_idle(notifier), timeout=10, interval=0.1, what="the sender to drain its queue")
        assert notifier.book.firing == {} and len(notifier.book.pending) == 1
        assert am.alerts() == [] and webhook.received == {} and smtp.messages == [], "nothing before the hold-down"
        assert notifier.stats["posts_ok"] == resends

        offset[0] = hold + 1  # the pass after the hold-down: the alert is sent
        notifier([], [verdict])
        wait_until(lambda: webhook.received.get("oncall"), timeout=30, interval=0.2, what="the webhook notification")
        wait_until(lambda: smtp.messages, timeout=30, interval=0.2, what="the e-mail notification")
    finally:
        notifier.stop()

    (alert,) = webhook.received["oncall"][0]["alerts"]
    assert alert["labels"]["alertname"] == "CommuneSiteRegressed" and alert["labels"]["province"] == "ha-noi"
    annotations = alert["annotations"]
    assert (annotations["site_name"], annotations["province_name"]) == ("Xã Sóc Sơn", "Hà Nội")
    assert annotations["page_url"] == f"{STATUS}/s/hn-lossy"
    assert annotations["what_vi"].startswith("Tỷ lệ mất gói") and "12,3%" in annotations["what_vi"]

    message = smtp.messages[0]
    assert str(message["Subject"]) == "[CẢNH BÁO:1] Xã Sóc Sơn (Hà Nội): Xã không còn đạt trạng thái hoàn thành"
    body = message.get_body(("plain",)).get_content()
    assert "Chi tiết: Tỷ lệ mất gói" in body and "12,3%" in body
    assert f"Trang của xã: {STATUS}/s/hn-lossy" in body
    assert "(giờ Việt Nam, UTC+7)" in body and "UTC\n" not in body
    assert "fell back" not in body and "FIRING" not in body, "no English in the Vietnamese notification"


def _sender_idle(notifier: AlertmanagerNotifier) -> bool:
    return notifier._queue.empty()
