"""Exchanging an enrollment token for a site's own token: every rule in one place, no HTTP.

Refusals are :class:`EnrollRefused` with the HTTP status the route answers
and a message in plain words for the person at the site; a mistyped site id
gets the nearest ids of the token's scope (difflib), never the whole inventory.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass

from commune_collector.auth import hash_secret, new_token
from commune_collector.fleet.db import FleetDb, UseRefused
from commune_collector.fleet.tokens import EnrollToken, parse_enroll_token
from commune_collector.sites import closest
from commune_collector.store.base import Site, Store, all_sites


class EnrollRefused(Exception):
    def __init__(self, status: int, title: str, detail: str, field: str = "", reason: str = ""):
        super().__init__(detail)
        self.status, self.title, self.detail, self.field, self.reason = status, title, detail, field, reason


@dataclass(frozen=True)
class Enrolled:
    site: Site
    token: str  # the site token, handed over once
    reenrolled: bool


def check_token(db: FleetDb, text: str, now: float) -> EnrollToken:
    """The usable enrollment token ``text`` names; EnrollRefused(401) otherwise (never echoing it)."""
    parsed = parse_enroll_token(text or "")
    if parsed is None:
        raise EnrollRefused(401, "Unauthorized", "this is not an enrollment token (ce_...)", "token", "malformed")
    record = db.get_enroll_token(parsed[0])
    if record is None or not hmac.compare_digest(record.hash, hash_secret(parsed[1])):
        raise EnrollRefused(401, "Unauthorized", "unknown enrollment token", "token", "unknown")
    state = record.state(now)
    if state != "usable":
        raise EnrollRefused(401, "Unauthorized", f"this enrollment token is {state}; ask the operator for a new one",
                            "token", state.replace(" ", "_"))
    return record


def nearest_sites(store: Store, site: str, token: EnrollToken, n: int = 3) -> list[str]:
    """Site ids of the token's scope closest to a mistyped ``site``."""
    if token.sites:
        candidates = list(token.sites)
    else:
        candidates = [s.id for s in all_sites(store, token.province)]
    return closest(site, candidates, n)



def find_site(store: Store, site_id: str, token: EnrollToken) -> Site:
    site = store.get_site(site_id)
    if site is None:
        near = nearest_sites(store, site_id, token)
        hint = f"; did you mean {', '.join(near)}?" if near else "; check the site id on the inventory sheet"
        raise EnrollRefused(422, "Unknown site", f"site {site_id!r} is not in the collector's inventory{hint}",
                            "site", "unknown_site")
    if not token.covers(site.id, site.province):
        raise EnrollRefused(403, "Forbidden", f"this enrollment token is for {token.scope_text()}, "
                                              f"not for site {site.id}", "site", "out_of_scope")
    return site


def live_agent(store: Store, site: str, instance: str, now: float, live_within: float) -> str | None:
    """The instance id of another agent that reported for ``site`` within ``live_within``, else None."""
    status = store.site_status([site]).get(site)
    if status is None or status.instance == instance or now - status.last_report_at > live_within:
        return None
    return status.instance


def enroll(store: Store, db: FleetDb, token_text: str, site_id: str, instance: str, *,
           live_within: float, now: float | None = None) -> Enrolled:
    """Check everything, then issue the site's token in one transaction (see ``FleetDb.enroll``)."""
    now = time.time() if now is None else now
    token = check_token(db, token_text, now)
    site = find_site(store, site_id, token)
    other = live_agent(store, site.id, instance, now, live_within)
    reenrolled = other is not None
    if other is not None and not (token.allow_reenroll or db.reenroll_allowed(site.id)):
        minutes = max(1, round(live_within / 60))
        raise EnrollRefused(409, "Site has a live agent",
                            f"another agent (instance {other}) reported for site {site.id} in the last {minutes} "
                            f"minutes; if this box replaces it, ask the operator to run "
                            f"`commune-collector enroll-token allow-reenroll {site.id}` and enroll again",
                            "site", "live_agent")
    text, record = new_token(site.id, now)
    try:
        db.enroll(token, record, instance, now, reenrolled)
    except UseRefused:
        raise EnrollRefused(401, "Unauthorized", "this enrollment token was used up meanwhile; ask the operator "
                                                 "for a new one", "token", "used_up") from None
    return Enrolled(site, text, reenrolled)
