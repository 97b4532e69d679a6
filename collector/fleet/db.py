"""The fleet's tables (migration ``0300_fleet``) on a connection of their own, SQLite or PostgreSQL.

Enrollment is one transaction: the use is counted with a conditional UPDATE
(``uses < max_uses``), so two boxes racing for the last use cannot both win,
on either database; the site's earlier tokens are revoked and its new token
stored in the same commit, so an enrollment is all or nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from commune_collector.fleet.tokens import EnrollToken
from commune_collector.store.base import TokenRecord
from commune_collector.store.verdicts import JudgeDb

_TOKEN_COLUMNS = "id, hash, province, sites, created_at, expires_at, max_uses, uses, allow_reenroll, revoked_at, note"


@dataclass(frozen=True)
class Enrollment:
    site: str
    enroll_token: str
    site_token: str
    instance: str
    enrolled_at: float
    reenrolled: bool


@dataclass(frozen=True)
class AgentState:
    """What the newest reports of a site's agent said about its config, and any second instance."""

    site: str
    instance: str
    config_version: str
    config_error: str
    updated_at: float
    other_instance: str = ""
    other_seen_at: float | None = None


class UseRefused(Exception):
    """The enrollment token was used up, revoked or expired between reading and using it."""


def _token(row: Sequence[Any]) -> EnrollToken:
    sites = tuple(s for s in (row[3] or "").split(",") if s)
    return EnrollToken(row[0], row[1], row[2], sites, float(row[4]), float(row[5]), int(row[6]), int(row[7]),
                       bool(row[8]), None if row[9] is None else float(row[9]), row[10] or "")


class FleetDb:
    """Every query of the fleet feature; ``store`` is the collector's SqlStore (its dialect is reused)."""

    def __init__(self, store: Any):
        self.db = JudgeDb(store.dialect_impl)

    def close(self) -> None:
        self.db.close()

    # -- enrollment tokens ---------------------------------------------------------------

    def add_enroll_token(self, t: EnrollToken) -> None:
        with self.db.tx() as conn:
            self.db.execute(conn, f"INSERT INTO enroll_tokens ({_TOKEN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            (t.id, t.hash, t.province, ",".join(t.sites) or None, t.created_at, t.expires_at,
                             t.max_uses, t.uses, t.allow_reenroll, t.revoked_at, t.note))

    def get_enroll_token(self, token_id: str) -> EnrollToken | None:
        rows = self.db.fetch(f"SELECT {_TOKEN_COLUMNS} FROM enroll_tokens WHERE id = ?", (token_id,))
        return _token(rows[0]) if rows else None

    def list_enroll_tokens(self) -> list[EnrollToken]:
        return [_token(r) for r in self.db.fetch(f"SELECT {_TOKEN_COLUMNS} FROM enroll_tokens "
                                                 "ORDER BY created_at DESC")]

    def revoke_enroll_token(self, token_id: str, at: float) -> int:
        with self.db.tx() as conn:
            return int(self.db.execute(conn, "UPDATE enroll_tokens SET revoked_at = ? WHERE id = ? AND "
                                             "revoked_at IS NULL", (at, token_id)).rowcount)

    # -- re-enrollment ---------------------------------------------------------------------

    def allow_reenroll(self, site: str, at: float) -> None:
        with self.db.tx() as conn:
            self.db.execute(conn, "INSERT INTO fleet_reenroll (site, allowed_at) VALUES (?, ?) ON CONFLICT (site) "
                                  "DO UPDATE SET allowed_at = excluded.allowed_at", (site, at))

    def reenroll_allowed(self, site: str) -> bool:
        return bool(self.db.fetch("SELECT 1 FROM fleet_reenroll WHERE site = ?", (site,)))

    # -- enrolling ---------------------------------------------------------------------------

    def enroll(self, token: EnrollToken, site_token: TokenRecord, instance: str, now: float,
               reenrolled: bool) -> None:
        """Count the use, revoke the site's earlier tokens, store the new one and the record; one commit."""
        with self.db.tx() as conn:
            used = self.db.execute(conn, "UPDATE enroll_tokens SET uses = uses + 1 WHERE id = ? AND uses < max_uses "
                                         "AND revoked_at IS NULL AND expires_at > ?", (token.id, now)).rowcount
            if used != 1:
                raise UseRefused(token.id)
            self.db.execute(conn, "UPDATE tokens SET revoked_at = ? WHERE site = ? AND revoked_at IS NULL",
                            (now, site_token.site))
            self.db.execute(conn, "INSERT INTO tokens (id, site, hash, created_at) VALUES (?, ?, ?, ?)",
                            (site_token.id, site_token.site, site_token.hash, site_token.created_at))
            self.db.execute(conn, "INSERT INTO enrollments (site, enroll_token, site_token, instance, enrolled_at, "
                                  "reenrolled) VALUES (?, ?, ?, ?, ?, ?)",
                            (site_token.site, token.id, site_token.id, instance, now, reenrolled))
            self.db.execute(conn, "DELETE FROM fleet_reenroll WHERE site = ?", (site_token.site,))

    def enrollments(self, site: str | None = None) -> list[Enrollment]:
        where, params = ("WHERE site = ?", (site,)) if site else ("", ())
        rows = self.db.fetch("SELECT site, enroll_token, site_token, instance, enrolled_at, reenrolled "
                             f"FROM enrollments {where} ORDER BY enrolled_at, id", params)
        return [Enrollment(r[0], r[1], r[2], r[3], float(r[4]), bool(r[5])) for r in rows]

    # -- what agents report ---------------------------------------------------------------------

    def save_agent_state(self, s: AgentState) -> None:
        with self.db.tx() as conn:
            self.db.execute(conn, "INSERT INTO fleet_agents (site, instance, config_version, config_error, "
                                  "updated_at, other_instance, other_seen_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
                                  "ON CONFLICT (site) DO UPDATE SET instance = excluded.instance, "
                                  "config_version = excluded.config_version, config_error = excluded.config_error, "
                                  "updated_at = excluded.updated_at, other_instance = excluded.other_instance, "
                                  "other_seen_at = excluded.other_seen_at",
                            (s.site, s.instance, s.config_version, s.config_error, s.updated_at, s.other_instance,
                             s.other_seen_at))

    def agent_states(self) -> dict[str, AgentState]:
        rows = self.db.fetch("SELECT site, instance, config_version, config_error, updated_at, other_instance, "
                             "other_seen_at FROM fleet_agents")
        return {r[0]: AgentState(r[0], r[1], r[2], r[3], float(r[4]), r[5] or "",
                                 None if r[6] is None else float(r[6])) for r in rows}
