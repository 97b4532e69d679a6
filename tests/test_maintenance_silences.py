"""Maintenance windows mirrored as silences in a real Alertmanager.

Each test declares windows, runs ``SilenceSync`` against the session's
Alertmanager and reads back, through Alertmanager's own v2 API, the silences
it holds and whether posted alerts come out suppressed. The clock is frozen
near the real time (Alertmanager judges start and end by its own clock), so
every expected time is exact. Site, province and window ids carry a random
suffix so nothing here can touch another test's alerts in the shared peer.
"""

from __future__ import annotations

import logging
import queue
import re
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from commune_collector.alerting import AlertingSettings
from commune_collector.alerting.rules import iso
from commune_collector.maintenance.silences import (
    CREATED_BY,
    MAX_REGEX_BYTES,
    SilenceSync,
    SyncResult,
    parse_time,
)
from commune_collector.maintenance.windows import MaintenanceWindow
from testsupport.peers._base import free_tcp_port

DAY = 86400.0
ERRORS = "commune_collector_maintenance_silence_sync_errors_total"
IN_FORCE = "commune_collector_maintenance_silences"


# -- helpers --------------------------------------------------------------------


class Clock:
    """A frozen clock a test moves by hand."""

    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def window(wid: str, *, scope: str = "sites", sites: tuple[str, ...] = (), targets: tuple[str, ...] | None = None,
           province: str = "mw-tinh", start: float, end: float, every: str | None = None,
           until: float | None = None) -> MaintenanceWindow:
    return MaintenanceWindow(id=wid, scope=scope, targets=targets if targets is not None else sites, sites=sites,
                             provinces=(province,), starts_at=start, ends_at=end, reason="cắt điện theo lịch EVN",
                             created_by="op.hanoi", created_at=start - 3600, every=every, until=until)


def silences(am: Any) -> list[dict[str, Any]]:
    """Alertmanager's silences that are not expired (any author)."""
    response = httpx.get(f"{am.url}/api/v2/silences", timeout=5)
    response.raise_for_status()
    return [s for s in response.json() if s["status"]["state"] != "expired"]


def ours(am: Any) -> list[dict[str, Any]]:
    return sorted((s for s in silences(am) if s["createdBy"] == CREATED_BY and s["comment"].startswith("[")),
                  key=lambda s: s["comment"])


def silence_by_id(am: Any, sid: str) -> dict[str, Any]:
    response = httpx.get(f"{am.url}/api/v2/silence/{sid}", timeout=5)
    response.raise_for_status()
    return response.json()


class Alerts:
    """Alerts this test posts (tagged with a run label) and reads back; resolved at teardown."""

    def __init__(self, am: Any, now: float):
        self.am = am
        self.now = now
        self.run = secrets.token_hex(4)
        self.posted: list[dict[str, str]] = []

    def post(self, **labels: str) -> None:
        full = {"alertname": "MaintenanceProbe", "mwtest": self.run, **labels}
        self.posted.append(full)
        self.am.post_alerts([{"labels": full, "startsAt": iso(self.now - 60), "endsAt": iso(time.time() + 600)}])

    def status(self, **labels: str) -> dict[str, Any]:
        filters = [f'mwtest="{self.run}"', *(f'{k}="{v}"' for k, v in labels.items())]
        (alert,) = self.am.alerts(filters=filters)
        return alert["status"]

    def resolve_all(self) -> None:
        if self.posted:
            end = iso(time.time() - 1)
            self.am.post_alerts([{"labels": labels, "startsAt": iso(self.now - 60), "endsAt": end}
                                 for labels in self.posted])


@pytest.fixture
def am(alertmanager: Any) -> Iterator[Any]:
    """The session Alertmanager, with no silence of ours before and after the test."""
    cleaner = SilenceSync(AlertingSettings(alertmanager_url=alertmanager.url))
    assert cleaner.sync([]).error is None
    yield alertmanager
    assert cleaner.sync([]).error is None


@pytest.fixture
def now() -> float:
    return float(int(time.time()))


@pytest.fixture
def alerts(am: Any, now: float) -> Iterator[Alerts]:
    book = Alerts(am, now)
    yield book
    book.resolve_all()


def ids(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def registry_for(sync: SilenceSync) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(sync)
    return registry


# -- the tests ----------------------------------------------------------------------


def test_a_one_off_window_silences_its_sites_for_exactly_its_time(am, alerts, now):
    a, b, c = ids("mw-xa-a"), ids("mw-xa-b"), ids("mw-xa-c")
    wid = ids("mw")
    start, end = now - 600, now + 3600  # started ten minutes ago
    sync = SilenceSync(AlertingSettings(alertmanager_url=am.url), clock=Clock(now))
    registry = registry_for(sync)

    before = time.time()
    result = sync.sync([window(wid, sites=(b, a), start=start, end=end)])
    after = time.time()

    assert result == SyncResult(created=1, expired=0, kept=0)
    (silence,) = ours(am)
    assert silence["status"]["state"] == "active"
    assert silence["matchers"] == [{"name": "site", "value": f"^(?:{re.escape(a)}|{re.escape(b)})$",
                                    "isRegex": True, "isEqual": True}]
    assert silence["endsAt"] == iso(end)
    # a start in the past is accepted and moved to Alertmanager's own "now"
    assert before - 0.01 <= parse_time(silence["startsAt"]) <= after + 0.01
    assert silence["comment"] == (f"[{wid} @{int(start)}] Bảo trì: cắt điện theo lịch EVN "
                                  f"(declared by op.hanoi)")
    assert silence["createdBy"] == CREATED_BY
    assert registry.get_sample_value(IN_FORCE) == 1

    alerts.post(site=a, province="mw-tinh")
    alerts.post(site=c, province="mw-tinh")
    muted, loud = alerts.status(site=a), alerts.status(site=c)
    assert muted["state"] == "suppressed" and muted["silencedBy"] == [silence["id"]]
    assert loud["state"] == "active" and loud["silencedBy"] == []


def test_a_second_sync_changes_nothing(am, now):
    wid, site = ids("mw"), ids("mw-xa")
    clock = Clock(now)
    sync = SilenceSync(AlertingSettings(alertmanager_url=am.url), clock=clock)
    declared = [window(wid, sites=(site,), start=now - 60, end=now + 7200)]
    assert sync.sync(declared) == SyncResult(created=1)
    (first,) = ours(am)

    assert sync.sync(declared) == SyncResult(created=0, expired=0, kept=1)
    clock.now += 120  # later, the started occurrence's startsAt (Alertmanager's clock) still fits
    assert sync.sync(declared) == SyncResult(created=0, expired=0, kept=1)
    (again,) = ours(am)
    assert again["id"] == first["id"] and again["updatedAt"] == first["updatedAt"]


def test_a_cancelled_window_expires_its_silence_and_the_alert_fires_again(am, alerts, now):
    wid, site = ids("mw"), ids("mw-xa")
    clock = Clock(now)
    sync = SilenceSync(AlertingSettings(alertmanager_url=am.url), clock=clock)
    registry = registry_for(sync)
    declared = window(wid, sites=(site,), start=now - 60, end=now + 7200)
    assert sync.sync([declared]).created == 1
    (silence,) = ours(am)
    alerts.post(site=site, province="mw-tinh")
    assert alerts.status(site=site)["state"] == "suppressed"

    clock.now += 30
    assert sync.sync([declared.cancelled(clock.now, "op.hanoi")]) == SyncResult(created=0, expired=1, kept=0)
    assert ours(am) == []
    assert silence_by_id(am, silence["id"])["status"]["state"] == "expired"
    status = alerts.status(site=site)
    assert status["state"] == "active" and status["silencedBy"] == []
    assert registry.get_sample_value(IN_FORCE) == 0


def test_a_moved_or_extended_window_replaces_its_silences_without_a_gap(am, alerts, now):
    site = ids("mw-xa")
    clock = Clock(now)
    sync = SilenceSync(AlertingSettings(alertmanager_url=am.url), clock=clock)
    running = window(ids("mw"), sites=(site,), start=now - 60, end=now + 600)
    planned = window(ids("mw"), sites=(site,), start=now + 3600, end=now + 7200)
    assert sync.sync([running, planned]) == SyncResult(created=2)
    old = {s["comment"].split("]")[0]: s["id"] for s in ours(am)}
    alerts.post(site=site, province="mw-tinh")

    extended = replace(running, ends_at=now + 1800)  # same occurrence, later end: same tag, new silence
    moved = replace(planned, starts_at=now + 5400, ends_at=now + 9000)  # a pending one moved
    assert sync.sync([extended, moved]) == SyncResult(created=2, expired=2)
    listed = {s["comment"].split("]")[0]: s for s in ours(am)}
    assert set(listed) == {f"[{running.id} @{int(now - 60)}", f"[{planned.id} @{int(now + 5400)}"}
    assert listed[f"[{running.id} @{int(now - 60)}"]["endsAt"] == iso(now + 1800)
    moved_silence = listed[f"[{planned.id} @{int(now + 5400)}"]
    assert (moved_silence["startsAt"], moved_silence["endsAt"]) == (iso(now + 5400), iso(now + 9000))
    assert all(silence_by_id(am, sid)["status"]["state"] == "expired" for sid in old.values())
    assert alerts.status(site=site)["silencedBy"] == [listed[f"[{running.id} @{int(now - 60)}"]["id"]]


def test_a_province_window_matches_the_province_label_and_mutes_its_upstream_alert(am, alerts, now):
    province, other = ids("mw-tinh"), ids("mw-tinh-khac")
    wid = ids("mw")
    sync = SilenceSync(AlertingSettings(alertmanager_url=am.url), clock=Clock(now))
    declared = window(wid, scope="province", targets=(province,), sites=(ids("mw-xa"),), province=province,
                      start=now - 60, end=now + 1800)
    assert sync.sync([declared]).created == 1
    (silence,) = ours(am)
    assert silence["matchers"] == [{"name": "province", "value": province, "isRegex": False, "isEqual": True}]

    alerts.post(province=province, upstream="vnpt-dien-bien")  # an upstream outage: no site label
    alerts.post(province=other, upstream="vnpt-dien-bien")
    muted, loud = alerts.status(province=province), alerts.status(province=other)
    assert muted["state"] == "suppressed" and muted["silencedBy"] == [silence["id"]]
    assert loud["state"] == "active"


def test_a_daily_window_gets_silences_within_the_horizon_only(am, now):
    wid, site = ids("mw"), ids("mw-xa")
    clock = Clock(now)
    sync = SilenceSync(AlertingSettings(alertmanager_url=am.url), clock=clock, horizon=3 * DAY)
    start = now + 3600  # an hour from now, two hours, every day for a month
    declared = [window(wid, sites=(site,), start=start, end=start + 7200, every="day", until=start + 30 * DAY)]

    assert sync.sync(declared) == SyncResult(created=3)
    listed = ours(am)
    assert [(s["startsAt"], s["endsAt"]) for s in listed] == [
        (iso(start + k * DAY), iso(start + k * DAY + 7200)) for k in range(3)]
    assert [s["status"]["state"] for s in listed] == ["pending"] * 3  # a future start is kept exactly
    assert [s["comment"].split("]")[0] for s in listed] == [f"[{wid} @{int(start + k * DAY)}" for k in range(3)]

    clock.now += 7200  # the first occurrence has begun; the horizon now reaches a fourth one
    assert sync.sync(declared) == SyncResult(created=1, kept=3)
    assert [(s["startsAt"], s["endsAt"]) for s in ours(am)] == [
        (iso(start + k * DAY), iso(start + k * DAY + 7200)) for k in range(4)]


def test_an_unreachable_alertmanager_is_reported_counted_and_never_raised(caplog):
    port = free_tcp_port()  # nothing listens here
    sync = SilenceSync(AlertingSettings(alertmanager_url=f"http://ops:s3cret@127.0.0.1:{port}", timeout="2s"))
    registry = registry_for(sync)
    declared = [window("mw-down", sites=("mw-xa",), start=time.time() - 60, end=time.time() + 600)]

    with caplog.at_level(logging.WARNING, logger="commune_collector.maintenance"):
        result = sync.sync(declared)
    assert result.error is not None and "ConnectError" in result.error
    assert (result.created, result.expired, result.kept) == (0, 0, 0)
    assert registry.get_sample_value(ERRORS) == 1
    (record,) = caplog.records
    assert f"http://127.0.0.1:{port}" in record.getMessage()
    assert "s3cret" not in caplog.text and "s3cret" not in result.error

    refusing = SilenceSync(AlertingSettings(alertmanager_url="http://am.test:9093"),
                           transport=httpx.MockTransport(lambda request: httpx.Response(503, text="not ready")))
    assert refusing.sync(declared).error == "GET /api/v2/silences -> HTTP 503: not ready"
    assert registry_for(refusing).get_sample_value(ERRORS) == 1
    sync.sync(declared)
    assert registry.get_sample_value(ERRORS) == 2


def test_a_sync_cut_short_is_finished_by_the_next_one(am, now):
    wid, site = ids("mw"), ids("mw-xa")
    real = httpx.HTTPTransport()
    posts = 0

    def flaky(request: httpx.Request) -> httpx.Response:
        nonlocal posts
        if request.method == "POST":
            posts += 1
            if posts == 2:
                raise httpx.ConnectError("connection reset", request=request)
        return real.handle_request(request)

    declared = [window(wid, sites=(site,), start=now + 3600, end=now + 7200, every="day", until=now + 30 * DAY)]
    first = SilenceSync(AlertingSettings(alertmanager_url=am.url), clock=Clock(now), horizon=3 * DAY,
                        transport=httpx.MockTransport(flaky))
    result = first.sync(declared)
    assert result.created == 1 and result.error is not None
    assert len(ours(am)) == 1

    second = SilenceSync(AlertingSettings(alertmanager_url=am.url), clock=Clock(now), horizon=3 * DAY)
    assert second.sync(declared) == SyncResult(created=2, kept=1)
    assert len(ours(am)) == 3


def test_a_long_site_list_is_split_and_every_part_silences(am, alerts, now):
    wid = ids("mw")
    run = secrets.token_hex(3)
    sites = tuple(f"mw-{run}-xa-{i:03d}-" + "x" * 150 for i in range(200))  # ~31 KB of regex in one
    assert len("|".join(re.escape(s) for s in sites)) > MAX_REGEX_BYTES
    sync = SilenceSync(AlertingSettings(alertmanager_url=am.url), clock=Clock(now))
    declared = [window(wid, sites=sites, start=now - 60, end=now + 3600)]

    assert sync.sync(declared) == SyncResult(created=2)
    parts = ours(am)
    assert [p["comment"].split("]")[0] for p in parts] == [f"[{wid} @{int(now - 60)} part {k}/2" for k in (1, 2)]
    regexes = [p["matchers"][0]["value"] for p in parts]
    assert all(len(r.encode()) <= MAX_REGEX_BYTES for r in regexes)
    for site in sites:  # each site in exactly one part
        assert sum(1 for r in regexes if re.fullmatch(r, site)) == 1, site
    assert all(p["endsAt"] == iso(now + 3600) for p in parts)

    for part in parts:
        site = next(s for s in sites if re.fullmatch(part["matchers"][0]["value"], s))
        alerts.post(site=site, province="mw-tinh")
        assert alerts.status(site=site)["silencedBy"] == [part["id"]]
    assert sync.sync(declared) == SyncResult(kept=2)


def test_silences_made_by_others_are_never_touched(am, now):
    site = ids("mw-xa")
    by_hand = []
    for created_by, comment in [("nguyen.van.a", "[mw-fake @1] copied tag, other author"),
                                (CREATED_BY, "no tag: made by hand under our name")]:
        body = {"matchers": [{"name": "site", "value": site, "isRegex": False, "isEqual": True}],
                "startsAt": iso(now), "endsAt": iso(now + 3600), "createdBy": created_by, "comment": comment}
        response = httpx.post(f"{am.url}/api/v2/silences", json=body, timeout=5)
        response.raise_for_status()
        by_hand.append(response.json()["silenceID"])
    try:
        before = [silence_by_id(am, sid) for sid in by_hand]
        sync = SilenceSync(AlertingSettings(alertmanager_url=am.url), clock=Clock(now))
        assert sync.sync([]) == SyncResult()
        declared = [window(ids("mw"), sites=(site,), start=now - 60, end=now + 600)]
        assert sync.sync(declared) == SyncResult(created=1)
        assert sync.sync([]) == SyncResult(expired=1)
        assert [silence_by_id(am, sid) for sid in by_hand] == before
        assert all(s["status"]["state"] == "active" for s in before)
    finally:
        for sid in by_hand:
            httpx.delete(f"{am.url}/api/v2/silence/{sid}", timeout=5)


def test_the_loop_syncs_at_start_and_on_trigger_until_stopped(am, now):
    wid, site = ids("mw"), ids("mw-xa")
    sync = SilenceSync(AlertingSettings(alertmanager_url=am.url), clock=Clock(now))
    results: queue.Queue[SyncResult] = queue.Queue()
    plain_sync = sync.sync

    def spy(windows: Any) -> SyncResult:
        result = plain_sync(windows)
        results.put(result)
        return result

    sync.sync = spy  # type: ignore[method-assign]
    declared: list[MaintenanceWindow] = []
    stop = threading.Event()
    loop = threading.Thread(target=sync.run, args=(stop, lambda: list(declared)), kwargs={"interval": 3600})
    loop.start()
    try:
        assert results.get(timeout=10) == SyncResult()  # the pass at start
        declared.append(window(wid, sites=(site,), start=now - 60, end=now + 600))
        sync.trigger()
        assert results.get(timeout=10) == SyncResult(created=1)
        assert len(ours(am)) == 1
    finally:
        stop.set()
        sync.trigger()
        loop.join(timeout=10)
    assert not loop.is_alive()
    assert results.empty()
