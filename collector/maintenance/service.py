"""Declaring, listing and cancelling maintenance windows, as the CLI and the API both do it.

Every rule lives here so the two doors agree: what a window may cover
(communes of the inventory, or a province), who may declare it (an operator
who manages every province it touches), and how far back it may start.
A window may not start long before it is declared: maintenance is planned
work, and declaring it after the fact would erase failures that already
happened from the verdict.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from commune_collector.access.roles import Principal
from commune_collector.maintenance.windows import PERIODS, MaintenanceWindow
from commune_collector.provinces import provinces
from commune_collector.sites import Site, closest
from commune_collector.store.base import Store, all_sites
from commune_common.provinces import nearest_provinces

MAX_BACKDATE = 3600.0  # a window may start this long before it is declared (the work began a moment ago)
MAX_DURATION = 31 * 86400.0  # one occurrence: a renovation, not a way to switch a commune off
MAX_AHEAD = 366 * 86400.0  # how far ahead a window (or a recurring window's last start) may be declared
MAX_REASON = 500
MAX_SITES_NAMED = 1000


class MaintenanceError(ValueError):
    """A declaration that cannot be accepted; ``field`` names what to fix (API 422, CLI exit 2)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


class NotAllowed(PermissionError):
    """The operator may not manage what the window covers (API 403, CLI exit 2)."""


@dataclass(frozen=True)
class Declaration:
    """What an operator asks for, before it is checked."""

    scope: str  # sites | province
    targets: tuple[str, ...]
    starts_at: float
    ends_at: float
    reason: str
    every: str | None = None
    until: float | None = None


def declare(store: Store, principal: Principal, ask: Declaration, now: float) -> MaintenanceWindow:
    """Check ``ask`` against the inventory and the principal's scope, store it, and return the window."""
    _check_times(ask, now)
    reason = ask.reason.strip()
    if not reason:
        raise MaintenanceError("reason", "say why (e.g. 'EVN scheduled power cut'): the pages and alerts show it")
    if len(reason) > MAX_REASON:
        raise MaintenanceError("reason", f"at most {MAX_REASON} characters")
    sites = _resolve(store, ask.scope, ask.targets)
    covered = tuple(sorted({s.province for s in sites}))
    denied = [p for p in covered if not principal.may_manage(p)]
    if denied:
        raise NotAllowed(f"{principal.name} ({principal.describe()}) may not declare maintenance in "
                         f"{', '.join(denied)}")
    window = MaintenanceWindow(id=f"mw-{secrets.token_hex(4)}", scope=ask.scope, targets=ask.targets,
                               sites=tuple(s.id for s in sites), provinces=covered, starts_at=ask.starts_at,
                               ends_at=ask.ends_at, reason=reason, created_by=principal.name, created_at=now,
                               every=ask.every, until=ask.until)
    store.add_window(window)
    return window


def visible(principal: Principal, windows: Sequence[MaintenanceWindow]) -> list[MaintenanceWindow]:
    """The windows this principal may read: any that touches a province it reads."""
    return [w for w in windows if any(principal.may_read_province(p) for p in w.provinces)]


def listed(store: Store, principal: Principal, show: str, now: float, province: str | None = None
           ) -> list[MaintenanceWindow]:
    """What ``list`` shows: current (active or ahead), past (ended or cancelled) or all, in scope."""
    windows = visible(principal, store.list_windows(None if show in ("all", "past") else now))
    if province is not None:
        windows = [w for w in windows if province in w.provinces]
    current = [w for w in windows if w.cancelled_at is None and w.last_end > now]
    if show == "current":
        return current
    return windows if show == "all" else [w for w in windows if w not in current]


def cancel(store: Store, principal: Principal, window_id: str, now: float, note: str | None = None
           ) -> MaintenanceWindow:
    """Cancel a live window: its future stops, its record stays. LookupError when the principal cannot see it."""
    window = store.get_window(window_id)
    if window is None or not visible(principal, [window]):
        raise LookupError(f"no maintenance window {window_id!r}")
    if window.cancelled_at is not None:
        raise MaintenanceError("id", f"{window_id} was already cancelled by {window.cancelled_by}")
    if not all(principal.may_manage(p) for p in window.provinces):
        raise NotAllowed(f"{principal.name} ({principal.describe()}) may not cancel a window covering "
                         f"{', '.join(window.provinces)}")
    note = (note or "").strip()[:MAX_REASON] or None
    store.cancel_window(window_id, now, principal.name, note)
    return window.cancelled(now, principal.name, note)


def _check_times(ask: Declaration, now: float) -> None:
    if ask.ends_at <= ask.starts_at:
        raise MaintenanceError("ends_at", "the end must be after the start")
    if ask.ends_at - ask.starts_at > MAX_DURATION:
        raise MaintenanceError("ends_at", f"one occurrence may last at most {MAX_DURATION / 86400:g} days")
    if ask.starts_at < now - MAX_BACKDATE:
        raise MaintenanceError("starts_at", f"a window may start at most {MAX_BACKDATE / 60:g} minutes ago: "
                                            "maintenance is declared before the work, not to excuse a past outage")
    if ask.starts_at > now + MAX_AHEAD:
        raise MaintenanceError("starts_at", "a window may start at most a year ahead")
    if ask.every is None:
        if ask.until is not None:
            raise MaintenanceError("until", "until is for a recurring window: give every (day or week) too")
        return
    if ask.every not in PERIODS:
        raise MaintenanceError("every", f"must be one of {', '.join(PERIODS)}")
    if ask.ends_at - ask.starts_at >= PERIODS[ask.every]:
        raise MaintenanceError("ends_at", f"each occurrence must be shorter than a {ask.every}")
    if ask.until is None:
        raise MaintenanceError("until", "a recurring window needs the date it stops (until)")
    if ask.until <= ask.starts_at:
        raise MaintenanceError("until", "until must be after the first start")
    if ask.until > now + MAX_AHEAD:
        raise MaintenanceError("until", "a recurring window may run at most a year ahead")


def _resolve(store: Store, scope: str, targets: tuple[str, ...]) -> list[Site]:
    if not targets:
        raise MaintenanceError("targets", "name the communes (site ids) or the province it covers")
    if scope == "province":
        return _province_sites(store, targets)
    if scope == "group":
        return _group_sites(store, targets)
    if scope != "sites":
        raise MaintenanceError("scope", "must be sites, province or group")
    if len(targets) > MAX_SITES_NAMED:
        raise MaintenanceError("targets", f"at most {MAX_SITES_NAMED} communes by name; use the province scope")
    found, missing = [], []
    for site_id in dict.fromkeys(targets):
        site = store.get_site(site_id)
        (found if site is not None else missing).append(site or site_id)
    if missing:
        first = str(missing[0])
        hint = closest(first, [s.id for s in all_sites(store)])
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise MaintenanceError("targets", f"{first!r}{more} is not in the inventory"
                                          + (f"; did you mean {', '.join(hint)}?" if hint else ""))
    return found  # type: ignore[return-value]


def _group_sites(store: Store, targets: tuple[str, ...]) -> list[Site]:
    """The communes the inventory says share this upstream (its ``upstream`` column)."""
    if len(targets) != 1:
        raise MaintenanceError("targets", "one upstream group per window")
    everyone = all_sites(store)
    sites = [s for s in everyone if s.upstream == targets[0]]
    if not sites:
        groups = sorted({s.upstream for s in everyone if s.upstream})
        hint = closest(targets[0], groups)
        raise MaintenanceError("targets", f"no commune of the inventory has upstream {targets[0]!r}"
                                          + (f"; did you mean {', '.join(hint)}?" if hint else ""))
    return sites


def _province_sites(store: Store, targets: tuple[str, ...]) -> list[Site]:
    if len(targets) != 1:
        raise MaintenanceError("targets", "one province per window (declare one window per province)")
    slug = targets[0]
    if slug not in provinces():
        hint = nearest_provinces(slug)
        raise MaintenanceError("targets", f"{slug!r} is not a province slug"
                                          + (f"; did you mean {', '.join(hint)}?" if hint else ""))
    sites = all_sites(store, slug)
    if not sites:
        raise MaintenanceError("targets", f"the inventory has no commune in {slug}")
    return sites


