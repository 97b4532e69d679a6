"""Enrollment tokens: ``ce_<id>_<secret>``, shown once, stored as a SHA-256 of the secret.

The same reasoning as the site tokens (``collector.auth``): the secret is 32
random bytes, so a plain hash is safe and cheap. A distinct prefix keeps an
enrollment token from ever being mistaken for a site token, either way round.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from commune_collector.auth import hash_secret

PREFIX = "ce"
_TOKEN = re.compile(r"^ce_([a-f0-9]{12})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True)
class EnrollToken:
    """An enrollment token's record (never its secret)."""

    id: str
    hash: str
    province: str | None
    sites: tuple[str, ...]
    created_at: float
    expires_at: float
    max_uses: int
    uses: int = 0
    allow_reenroll: bool = False
    revoked_at: float | None = None
    note: str = ""

    def scope_text(self) -> str:
        return f"province {self.province}" if self.province else "sites " + ",".join(self.sites)

    def covers(self, site: str, province: str) -> bool:
        return province == self.province if self.province else site in self.sites

    def state(self, now: float) -> str:
        """Why it cannot be used now, or ``usable``."""
        if self.revoked_at is not None:
            return "revoked"
        if now >= self.expires_at:
            return "expired"
        if self.uses >= self.max_uses:
            return "used up"
        return "usable"


def new_enroll_token(province: str | None, sites: tuple[str, ...], created_at: float, expires_at: float,
                     max_uses: int, allow_reenroll: bool = False, note: str = "") -> tuple[str, EnrollToken]:
    """(the text to show once, the record to store)."""
    token_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    record = EnrollToken(token_id, hash_secret(secret), province, sites, created_at, expires_at, max_uses,
                         allow_reenroll=allow_reenroll, note=note)
    return f"{PREFIX}_{token_id}_{secret}", record


def parse_enroll_token(text: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed enrollment token, else None."""
    match = _TOKEN.match(text.strip())
    return (match.group(1), match.group(2)) if match else None
