"""Maintenance windows mirrored as Alertmanager silences.

Alerts about communes under declared maintenance must reach nobody, whichever
side raised them (the collector's notifier or a Prometheus rule), so they are
muted where both meet: in Alertmanager, for exactly each occurrence of a window.

The sync is a reconciler, not a sender of commands: every pass reads the
silences it owns (``createdBy`` is ours and the comment starts with a tag naming
the window and the occurrence), creates the ones missing, expires the ones no
window wants any more and leaves the rest alone. A pass cut short by an
unreachable Alertmanager therefore leaves nothing a later pass cannot repair.
Silences are made only a horizon ahead, so a recurring window does not fill
Alertmanager with years of them; later passes add the rest as time goes by.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from commune_collector.alerting.alertmanager import redact_url
from commune_collector.alerting.rules import iso
from commune_collector.alerting.settings import AlertingSettings
from commune_collector.maintenance.windows import MaintenanceWindow

log = logging.getLogger("commune_collector.maintenance")

CREATED_BY = "commune-collector"
DEFAULT_HORIZON_S = 7 * 86400.0
MAX_REGEX_BYTES = 30_000  # above this a site regex is split over several silences
TIME_TOLERANCE_S = 0.0015  # Alertmanager keeps milliseconds
STOP_POLL_S = 0.5  # how soon run() notices ``stop`` without a trigger()
TAG = re.compile(r"^\[(?P<window>[^\s\]]+) @(?P<start>[0-9.]+)(?: part (?P<part>\d+)/(?P<parts>\d+))?\]")

Matcher = tuple[str, str, bool]  # name, value, is_regex (always an equality or a regex match)


class SyncError(RuntimeError):
    """Alertmanager could not be reached or refused a request (message safe to log)."""


@dataclass(frozen=True)
class SyncResult:
    """What one sync did; ``error`` is set when it stopped early (a later sync finishes the job)."""

    created: int = 0
    expired: int = 0
    kept: int = 0
    error: str | None = None


@dataclass(frozen=True)
class WantedSilence:
    """One silence a window occurrence (or one part of it) calls for."""

    tag: str
    matchers: frozenset[Matcher]
    starts_at: float
    ends_at: float
    comment: str

    def payload(self, now: float) -> dict[str, Any]:
        return {"matchers": [{"name": name, "value": value, "isRegex": is_regex, "isEqual": True}
                             for name, value, is_regex in sorted(self.matchers)],
                "startsAt": iso(max(self.starts_at, now)), "endsAt": iso(self.ends_at),
                "createdBy": CREATED_BY, "comment": self.comment}


@dataclass(frozen=True)
class OwnedSilence:
    """A silence in Alertmanager that this sync made (found by its tag), not expired."""

    id: str
    tag: str
    matchers: frozenset[Matcher]
    starts_at: float
    ends_at: float
    comment: str

    def fits(self, wanted: WantedSilence) -> bool:
        return (self.matchers == wanted.matchers and self.comment == wanted.comment
                and abs(self.ends_at - wanted.ends_at) < TIME_TOLERANCE_S)


# -- what the windows want ------------------------------------------------------


def stamp(ts: float) -> str:
    """Unix seconds for a tag: whole seconds without decimals, else milliseconds."""
    return f"{ts:.3f}".rstrip("0").rstrip(".")


def site_regexes(sites: Iterable[str], limit: int = MAX_REGEX_BYTES) -> list[str]:
    """Anchored alternations of the escaped site ids, each at most ``limit`` bytes (one id alone may exceed it)."""
    regexes: list[str] = []
    part: list[str] = []
    size = len("^(?:)$")
    for escaped in (re.escape(site) for site in sorted(set(sites))):
        extra = len(escaped.encode()) + (1 if part else 0)
        if part and size + extra > limit:
            regexes.append(f"^(?:{'|'.join(part)})$")
            part, size, extra = [], len("^(?:)$"), len(escaped.encode())
        part.append(escaped)
        size += extra
    if part:
        regexes.append(f"^(?:{'|'.join(part)})$")
    return regexes


def matcher_sets(window: MaintenanceWindow) -> list[frozenset[Matcher]]:
    """The matchers of each silence one occurrence needs (several when a site list is split)."""
    if window.scope == "province":
        return [frozenset({("province", slug, False)}) for slug in sorted(set(window.targets))]
    return [frozenset({("site", regex, True)}) for regex in site_regexes(window.sites)]


def comment_for(window: MaintenanceWindow, tag: str) -> str:
    reason = f"Bảo trì: {window.reason}" if window.reason else "Bảo trì"
    return f"{tag} {reason} (declared by {window.created_by})"


def wanted_silences(windows: Iterable[MaintenanceWindow], now: float, horizon: float) -> list[WantedSilence]:
    """Every silence the live windows call for, for occurrences not over and starting within the horizon."""
    wanted: list[WantedSilence] = []
    for window in windows:
        if window.cancelled_at is not None and window.cancelled_at <= now:
            continue
        sets = matcher_sets(window)
        for start, end in window.occurrences(now, now + horizon):
            for index, matchers in enumerate(sets, 1):
                part = f" part {index}/{len(sets)}" if len(sets) > 1 else ""
                tag = f"[{window.id} @{stamp(start)}{part}]"
                wanted.append(WantedSilence(tag, matchers, start, end, comment_for(window, tag)))
    return wanted


# -- what Alertmanager holds ----------------------------------------------------


def parse_time(text: str) -> float:
    """RFC 3339 from Alertmanager (nanoseconds allowed) -> Unix seconds."""
    match = re.match(r"^(.*?T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", text)
    if not match:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    base, fraction, zone = match.groups()
    zone = "+00:00" if zone == "Z" else zone
    return datetime.fromisoformat(base + zone).timestamp() + float(f"0.{fraction or 0}")


def owned_silence(raw: dict[str, Any]) -> OwnedSilence | None:
    """The silence if this sync made it and it is not expired, else None."""
    comment = raw.get("comment") or ""
    tag = TAG.match(comment)
    if raw.get("createdBy") != CREATED_BY or tag is None or raw.get("status", {}).get("state") == "expired":
        return None
    matchers = frozenset((m["name"], m["value"], bool(m.get("isRegex")))
                         for m in raw["matchers"] if m.get("isEqual", True))
    if len(matchers) != len(raw["matchers"]):
        return None  # a negative matcher: not something we would have written
    return OwnedSilence(raw["id"], tag.group(0), matchers, parse_time(raw["startsAt"]),
                        parse_time(raw["endsAt"]), comment)


@dataclass(frozen=True)
class Plan:
    create: list[WantedSilence]
    expire: list[OwnedSilence]
    keep: list[OwnedSilence]


def plan(wanted: list[WantedSilence], owned: list[OwnedSilence]) -> Plan:
    """Keep an owned silence that fits a wanted one, create the wanted left over, expire the owned left over."""
    by_tag: dict[str, list[OwnedSilence]] = {}
    for silence in owned:
        by_tag.setdefault(silence.tag, []).append(silence)
    create: list[WantedSilence] = []
    keep: list[OwnedSilence] = []
    for want in wanted:
        candidates = by_tag.get(want.tag, [])
        match = next((silence for silence in candidates if silence.fits(want)), None)
        if match is None:
            create.append(want)
        else:
            candidates.remove(match)
            keep.append(match)
    expire = [silence for left in by_tag.values() for silence in left]
    return Plan(create, expire, keep)


# -- the reconciler ---------------------------------------------------------------


class SilenceSync(Collector):
    """Mirrors maintenance windows into Alertmanager silences; also a Prometheus collector.

    ``sync(windows)`` makes one pass and never raises for Alertmanager's sake;
    ``run(stop, windows)`` passes at start, every ``interval`` and on ``trigger()``.
    ``clock`` and ``transport`` are injectable, as in the notifier.
    """

    def __init__(self, settings: AlertingSettings, *, clock: Callable[[], float] = time.time,
                 transport: httpx.BaseTransport | None = None, horizon: float = DEFAULT_HORIZON_S):
        if not settings.alertmanager_url:
            raise ValueError("alerting.alertmanager_url is not set")
        self.settings = settings
        self.base_url = settings.alertmanager_url
        self.clock = clock
        self.horizon = horizon
        self._transport = transport
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self.active = 0  # owned silences in force after the last successful sync
        self.errors = 0
        self.last_result: SyncResult | None = None

    # -- one pass -------------------------------------------------------------

    def sync(self, windows: Iterable[MaintenanceWindow]) -> SyncResult:
        """Create the missing silences, expire the unwanted, keep the rest; report what was done."""
        with self._lock:
            now = self.clock()
            wanted = wanted_silences(windows, now, self.horizon)
            done = {"created": 0, "expired": 0, "kept": 0}
            try:
                with httpx.Client(timeout=self.settings.timeout, transport=self._transport) as client:
                    self._apply(client, wanted, now, done)
            except SyncError as exc:
                self.errors += 1
                log.warning("maintenance silences not synced with %s: %s", redact_url(self.base_url), exc)
                self.last_result = SyncResult(**done, error=str(exc))
            else:
                self.last_result = SyncResult(**done)
            return self.last_result

    def _apply(self, client: httpx.Client, wanted: list[WantedSilence], now: float,
               done: dict[str, int]) -> None:
        todo = plan(wanted, self._owned(client))
        done["kept"] = len(todo.keep)
        for want in todo.create:  # create before expiring: a changed occurrence is never left bare
            self._request(client, "POST", "/api/v2/silences", json=want.payload(now))
            done["created"] += 1
        for silence in todo.expire:
            self._request(client, "DELETE", f"/api/v2/silence/{silence.id}")
            done["expired"] += 1
        starts = [s.starts_at for s in todo.keep] + [max(w.starts_at, now) for w in todo.create]
        self.active = sum(1 for start in starts if start <= now)

    def _owned(self, client: httpx.Client) -> list[OwnedSilence]:
        response = self._request(client, "GET", "/api/v2/silences")
        try:
            found = [owned_silence(raw) for raw in response.json()]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise SyncError(f"unreadable silences list: {type(exc).__name__}: {exc}") from exc
        return [silence for silence in found if silence is not None]

    def _request(self, client: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response:
        url = f"{self.base_url}{path}"
        try:
            response = client.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise SyncError(f"{type(exc).__name__} on {method} {redact_url(url)}") from exc
        if not response.is_success:
            raise SyncError(f"{method} {path} -> HTTP {response.status_code}: {response.text[:300].strip()}")
        return response

    # -- the loop -------------------------------------------------------------

    def trigger(self) -> None:
        """Ask the running loop for a pass now (e.g. a window was declared or cancelled)."""
        self._wake.set()

    def run(self, stop: threading.Event, windows: Callable[[], list[MaintenanceWindow]],
            interval: float = 60.0) -> None:
        """Sync at start, then every ``interval`` seconds and on each ``trigger()``, until ``stop`` is set."""
        while not stop.is_set():
            self._wake.clear()
            self._pass(windows)
            self._wait(stop, interval)

    def _pass(self, windows: Callable[[], list[MaintenanceWindow]]) -> None:
        try:
            listed = windows()
        except Exception as exc:  # noqa: BLE001 - a store hiccup must not end the loop
            self.errors += 1
            log.warning("maintenance windows could not be read for silences: %s: %s", type(exc).__name__, exc)
            return
        self.sync(listed)

    def _wait(self, stop: threading.Event, interval: float) -> None:
        deadline = time.monotonic() + interval
        while not stop.is_set() and not self._wake.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._wake.wait(min(remaining, STOP_POLL_S))

    # -- metrics --------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("commune_collector_maintenance_silences",
                                "Silences the collector made for maintenance windows, in force after the last sync.",
                                value=self.active)
        yield CounterMetricFamily("commune_collector_maintenance_silence_sync_errors",
                                  "Silence syncs that stopped early (Alertmanager away or refusing).",
                                  value=self.errors)


async def run_silences(state: Any) -> None:
    """Collector background task: keep Alertmanager's silences on the declared windows until it stops.

    A no-op when ``alerting.alertmanager_url`` is unset. The routes that declare or cancel a window
    call ``state.silences.trigger()`` so the silence follows at once.
    """
    settings = state.settings.alerting
    if not settings.enabled:
        return
    sync = SilenceSync(settings)
    stop = threading.Event()
    state.registry.register(sync)
    state.silences = sync
    worker = asyncio.create_task(asyncio.to_thread(
        sync.run, stop, lambda: state.store.list_windows(time.time())))
    try:
        await state.stop.wait()
    finally:
        stop.set()
        sync.trigger()
        await asyncio.gather(worker, return_exceptions=True)
        state.silences = None
        state.registry.unregister(sync)
