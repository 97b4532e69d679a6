"""Per-site tokens: issued once, stored as a hash, good for one site only.

A token reads ``cm_<id>_<secret>``: the id finds the record, the secret is 32
random bytes compared in constant time with the stored SHA-256. A plain hash
(no salt, no slow KDF) is right here because the secret is high-entropy random
data, not a password: there is no dictionary to attack, and a fast hash keeps
the check cheap at hundreds of requests a second.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from commune_collector.store.base import Store, TokenRecord

PREFIX = "cm"
_TOKEN = re.compile(r"^cm_([a-f0-9]{12})_([A-Za-z0-9_-]{43})$")


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def new_token(site: str, now: float | None = None) -> tuple[str, TokenRecord]:
    """A fresh token for ``site``: (the text to hand over once, the record to store)."""
    token_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    record = TokenRecord(token_id, site, hash_secret(secret), time.time() if now is None else now)
    return f"{PREFIX}_{token_id}_{secret}", record


def parse_token(text: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed token, else None."""
    match = _TOKEN.match(text.strip())
    return (match.group(1), match.group(2)) if match else None


class Unauthorized(Exception):
    """No usable token: the message says why, without echoing the token."""


class SiteNotInInventory(Exception):
    """A valid token whose site is no longer in the inventory (merged or removed): its reports are refused."""

    def __init__(self, site: str):
        super().__init__(f"site {site!r} is not in the inventory (removed or merged); its agent may not report")
        self.site = site


@dataclass
class _Cached:
    record: TokenRecord | None
    fetched_at: float
    site_known: bool = True  # the token's site is in the inventory (looked up with the token)


class TokenVerifier:
    """Resolves a bearer token to its site; lookups are cached for ``cache_ttl`` seconds.

    The cache is what keeps a store round trip off every request; its price is
    that a revocation made by another process takes effect within the TTL.
    """

    def __init__(self, store: Store, cache_ttl: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self.store = store
        self.cache_ttl = cache_ttl
        self._clock = clock
        self._cache: dict[str, _Cached] = {}
        self._lock = threading.Lock()

    def cached(self, token_id: str) -> _Cached | None:
        entry = self._cache.get(token_id)
        if entry is None or self._clock() - entry.fetched_at > self.cache_ttl:
            return None
        return entry

    def lookup(self, token_id: str) -> TokenRecord | None:
        """The token record, from the cache or the store (blocking: call from a thread)."""
        entry = self.cached(token_id)
        if entry is None:
            record = self.store.get_token(token_id)
            known = record is None or self.store.get_site(record.site) is not None
            entry = _Cached(record, self._clock(), known)
            with self._lock:
                if len(self._cache) > 100_000:
                    self._cache.clear()
                self._cache[token_id] = entry
        return entry.record

    def verify(self, text: str | None, record: TokenRecord | None) -> str:
        """The site the token may report for; Unauthorized otherwise."""
        parsed = parse_token(text or "")
        if parsed is None:
            raise Unauthorized("missing or malformed bearer token")
        if record is None or record.id != parsed[0]:
            raise Unauthorized("unknown token")
        if not hmac.compare_digest(record.hash, hash_secret(parsed[1])):
            raise Unauthorized("unknown token")
        entry = self._cache.get(record.id)
        if entry is not None and entry.record is record and not entry.site_known:
            raise SiteNotInInventory(record.site)
        if record.revoked_at is not None:
            raise Unauthorized("token revoked")
        return record.site

    def forget(self, token_id: str | None = None) -> None:
        with self._lock:
            if token_id is None:
                self._cache.clear()
            else:
                self._cache.pop(token_id, None)
