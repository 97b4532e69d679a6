"""Operators' bearer tokens: issued once, stored as a hash, with a role, a scope and an expiry.

A token reads ``cmo_<id>_<secret>`` (site tokens read ``cm_...``, so the two
never parse as each other). As for site tokens, the secret is 32 random bytes
and a plain SHA-256 is the right hash: high-entropy random data has no
dictionary to attack, and the check stays cheap.
"""

from __future__ import annotations

import hmac
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from commune_collector.access.roles import Principal, Role, check_scope
from commune_collector.auth import hash_secret
from commune_collector.store.base import OperatorRecord, Store

PREFIX = "cmo"
_TOKEN = re.compile(r"^cmo_([a-f0-9]{12})_([A-Za-z0-9_-]{43})$")
_SITE_TOKEN = re.compile(r"^cm_[a-f0-9]{12}_")


def new_operator_token(name: str, role: Role, province: str | None, expires_at: float | None,
                       now: float | None = None) -> tuple[str, OperatorRecord]:
    """A fresh credential: (the text to hand over once, the record to store)."""
    check_scope(role, province)
    token_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    record = OperatorRecord(token_id, name, role.value, province, hash_secret(secret),
                            time.time() if now is None else now, expires_at)
    return f"{PREFIX}_{token_id}_{secret}", record


def parse_operator_token(text: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed operator token, else None."""
    match = _TOKEN.match(text.strip())
    return (match.group(1), match.group(2)) if match else None


def looks_like_site_token(text: str) -> bool:
    return bool(_SITE_TOKEN.match(text.strip()))


class Denied(Exception):
    """No usable operator credential; the message says why without echoing the token."""


@dataclass
class _Cached:
    record: OperatorRecord | None
    fetched_at: float


class OperatorVerifier:
    """Resolves a bearer token to a Principal; lookups cached for ``cache_ttl`` seconds.

    As with site tokens, a revocation made by another process (``operator
    revoke``) takes effect within the TTL; expiry is checked on every request.
    """

    def __init__(self, store: Store, cache_ttl: float = 5.0, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time):
        self.store = store
        self.cache_ttl = cache_ttl
        self._clock = clock
        self._wall = wall
        self._cache: dict[str, _Cached] = {}
        self._lock = threading.Lock()

    def cached(self, token_id: str) -> _Cached | None:
        entry = self._cache.get(token_id)
        if entry is None or self._clock() - entry.fetched_at > self.cache_ttl:
            return None
        return entry

    def lookup(self, token_id: str) -> OperatorRecord | None:
        """The record, from the cache or the store (blocking: call from a thread)."""
        entry = self.cached(token_id)
        if entry is None:
            entry = _Cached(self.store.get_operator(token_id), self._clock())
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[token_id] = entry
        return entry.record

    def verify(self, text: str, record: OperatorRecord | None) -> Principal:
        """The principal of a valid, live token; Denied otherwise."""
        parsed = parse_operator_token(text)
        if parsed is None:
            raise Denied("not an operator token")
        if record is None or record.id != parsed[0] or not hmac.compare_digest(record.hash, hash_secret(parsed[1])):
            raise Denied("unknown operator token")
        if record.revoked_at is not None:
            raise Denied("operator token revoked")
        if record.expires_at is not None and record.expires_at <= self._wall():
            raise Denied("operator token expired: ask for a new one (commune-collector operator create)")
        return Principal(record.name, Role(record.role), record.province, via="token")
