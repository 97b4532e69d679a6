"""Roles, scopes and the principal a request acts as.

One rule everywhere: an operator scoped to a province sees the national
counts (the table the readiness meetings show everyone) and nothing addressed
to another province: its page, detail, history, exports, communes and their
reasons answer 404, exactly as if they did not exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    NATIONAL = "national"  # reads everything, /metrics too; manages every province
    PROVINCE = "province"  # reads and manages one province's communes; national counts only
    AUDITOR = "auditor"    # reads everything, manages nothing, no /metrics
    METRICS = "metrics"    # a scraper (Prometheus): /metrics only


ROLE_HELP = {
    Role.NATIONAL: "everything, every province, /metrics; may manage",
    Role.PROVINCE: "one province's communes (national counts only); may manage that province",
    Role.AUDITOR: "reads everything, manages nothing, no /metrics",
    Role.METRICS: "scrapes /metrics only (Prometheus)",
}


class ScopeError(ValueError):
    """A role and province that do not go together; the message says how to fix it."""


def check_scope(role: Role, province: str | None) -> None:
    """A province role needs its province; no other role takes one."""
    if role is Role.PROVINCE and not province:
        raise ScopeError("the province role needs a province (e.g. --province ha-noi)")
    if role is not Role.PROVINCE and province:
        raise ScopeError(f"the {role.value} role is not scoped to a province; leave the province out")


@dataclass(frozen=True)
class Principal:
    """Whom a request acts for: a name, a role, the province of a province role, and how it was proven."""

    name: str
    role: Role
    province: str | None = None
    via: str = "token"  # token | proxy | test

    @property
    def is_operator(self) -> bool:
        """A person (or their tool) reading data; a scraper is not."""
        return self.role is not Role.METRICS

    @property
    def reads_all(self) -> bool:
        return self.role in (Role.NATIONAL, Role.AUDITOR)

    @property
    def province_scope(self) -> str | None:
        """The one province lists are cut to; None for roles that read every province."""
        return None if self.reads_all else self.province

    def may_read_province(self, slug: str | None) -> bool:
        """Anything addressed to province ``slug`` (its communes, detail, history, exports)."""
        return self.reads_all or (self.role is Role.PROVINCE and slug is not None and slug == self.province)

    def may_read_metrics(self) -> bool:
        """/metrics carries every province's sites as labels: national operators and scrapers only."""
        return self.role in (Role.NATIONAL, Role.METRICS)

    def may_manage(self, slug: str | None) -> bool:
        """Write actions (e.g. maintenance windows) on province ``slug``; None means nation-wide."""
        if self.role is Role.NATIONAL:
            return True
        return self.role is Role.PROVINCE and slug is not None and slug == self.province

    def describe(self) -> str:
        return f"{self.role.value}:{self.province}" if self.province else self.role.value
