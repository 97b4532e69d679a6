"""Alerting on verdict changes: regressions, silent sites, UPS on battery, devices down.

One folder per alerting output (gatus keeps one per provider); Alertmanager's
v2 API is the one the project ships. The app runs :func:`run_alerting` as a
background task: it builds the notifier (:func:`build_notifier`), registers
it as a judge listener and its metrics on /metrics, and stops it on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from commune_collector.alerting.alertmanager import AlertmanagerNotifier
from commune_collector.alerting.rules import RULES, Alert, AlertBook, AlertRule
from commune_collector.alerting.settings import AlertingSettings

__all__ = ["RULES", "Alert", "AlertBook", "AlertRule", "AlertingSettings", "AlertmanagerNotifier",
           "build_notifier", "run_alerting"]

log = logging.getLogger("commune_collector.alerting")


def build_notifier(settings: AlertingSettings | None, listen_url: str = "http://localhost:8470"
                   ) -> AlertmanagerNotifier | None:
    """The notifier for these settings, or None when alerting is off (no URL).

    ``listen_url`` is the collector's own address, the fallback for links in
    alerts when ``alerting.external_url`` is not set.
    """
    if settings is None or not settings.enabled:
        return None
    return AlertmanagerNotifier(settings, default_external_url=listen_url)


async def run_alerting(state: Any) -> None:
    """Collector background task: alert on the judge's verdict changes until the collector stops.

    Registers the notifier as a judge listener and its metrics on the app's
    registry; a no-op when ``alerting.alertmanager_url`` is unset.
    """
    settings = state.settings
    scheme = "https" if settings.tls.enabled else "http"
    notifier = build_notifier(settings.alerting, listen_url=f"{scheme}://{settings.listen}")
    if notifier is None:
        return
    judge = getattr(state, "judge", None)
    if judge is None:
        log.warning("alerting is configured but the collector runs no judge: no alerts will be sent")
        return
    metrics = notifier.collector()
    state.registry.register(metrics)
    judge.add_listener(notifier)
    notifier.start()
    try:
        await state.stop.wait()
    finally:
        judge.remove_listener(notifier)
        await asyncio.to_thread(notifier.stop)
        state.registry.unregister(metrics)
