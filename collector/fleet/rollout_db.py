"""The rollouts' tables (migration ``0520_rollout``), SQLite or PostgreSQL, on the fleet's connection.

A state change is one conditional UPDATE (``WHERE state IN (...)``) and its
history row in the same commit: two replicas halting the same rollout, or an
operator promoting it while a replica halts it, cannot both win.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from commune_collector.fleet.rollout import Rollout, State
from commune_collector.store.verdicts import JudgeDb

_COLUMNS = ("id, state, base_hash, candidate_name, percent, provinces, note, started_by, started_at, ended_at, "
            "halt_reason")


@dataclass(frozen=True)
class RolloutSite:
    site: str
    province: str
    old_version: str
    new_version: str
    canary: bool
    results_old: int = 0
    failed_old: int = 0
    results_new: int = 0
    failed_new: int = 0


@dataclass(frozen=True)
class RolloutEvent:
    at: float
    actor: str
    action: str
    detail: str


@dataclass(frozen=True)
class Profiles:
    """The two profile texts a rollout serves."""

    base: str
    candidate: str


def _rollout(r: Sequence[Any]) -> Rollout:
    return Rollout(r[0], r[1], r[2], r[3], float(r[4]), tuple(p for p in (r[5] or "").split(",") if p), r[6] or "",
                   r[7], float(r[8]), None if r[9] is None else float(r[9]), r[10] or "")


class RolloutDb:
    """Every query of the staged rollouts."""

    def __init__(self, db: JudgeDb):
        self.db = db

    def add(self, r: Rollout, profiles: Profiles, sites: Iterable[RolloutSite]) -> None:
        with self.db.tx() as conn:
            self.db.execute(conn, "INSERT INTO rollouts (id, state, base_profile, base_hash, candidate, "
                                  "candidate_name, percent, provinces, note, started_by, started_at) "
                                  "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            (r.id, r.state, profiles.base, r.base_hash, profiles.candidate, r.candidate_name,
                             r.percent, ",".join(r.provinces), r.note, r.started_by, r.started_at))
            self.db.executemany(conn, "INSERT INTO rollout_sites (rollout, site, province, old_version, new_version, "
                                      "canary) VALUES (?, ?, ?, ?, ?, ?)",
                                [(r.id, s.site, s.province, s.old_version, s.new_version, s.canary) for s in sites])
            self._event(conn, r.id, r.started_at, r.started_by, "started",
                        f"{r.percent:g} %" + (f" of {', '.join(r.provinces)}" if r.provinces else ""))

    def _event(self, conn: Any, rollout: str, at: float, actor: str, action: str, detail: str) -> None:
        self.db.execute(conn, "INSERT INTO rollout_events (rollout, at, actor, action, detail) VALUES (?, ?, ?, ?, ?)",
                        (rollout, at, actor, action, detail))

    def get(self, rollout_id: str) -> Rollout | None:
        rows = self.db.fetch(f"SELECT {_COLUMNS} FROM rollouts WHERE id = ?", (rollout_id,))
        return _rollout(rows[0]) if rows else None

    def open(self) -> Rollout | None:
        """The running or halted rollout, if any (at most one is open)."""
        rows = self.db.fetch(f"SELECT {_COLUMNS} FROM rollouts WHERE state IN ('running', 'halted') "
                             "ORDER BY started_at DESC")
        return _rollout(rows[0]) if rows else None

    def recent(self, limit: int = 20) -> list[Rollout]:
        return [_rollout(r) for r in self.db.fetch(f"SELECT {_COLUMNS} FROM rollouts ORDER BY started_at DESC "
                                                   f"LIMIT {int(limit)}")]

    def profiles(self, rollout_id: str) -> Profiles:
        rows = self.db.fetch("SELECT base_profile, candidate FROM rollouts WHERE id = ?", (rollout_id,))
        return Profiles(rows[0][0], rows[0][1])

    def promoted(self) -> list[tuple[str, str, str]]:
        """(base_hash, candidate, candidate_name) of every promoted rollout, in the order they were promoted."""
        return [(r[0], r[1], r[2]) for r in self.db.fetch(
            "SELECT base_hash, candidate, candidate_name FROM rollouts WHERE state = 'promoted' ORDER BY ended_at")]

    def move(self, rollout_id: str, from_states: tuple[State, ...], to: State, at: float, actor: str,
             detail: str) -> bool:
        """Change the state if it is one of ``from_states``, with its history row; False when it was not."""
        ended = at if to in ("promoted", "rolled_back") else None
        marks = ", ".join("?" for _ in from_states)
        reason = ", halt_reason = ?" if to == "halted" else ""
        with self.db.tx() as conn:
            n = self.db.execute(conn, f"UPDATE rollouts SET state = ?, ended_at = ?{reason} WHERE id = ? AND "
                                      f"state IN ({marks})",
                                (to, ended, *((detail,) if reason else ()), rollout_id, *from_states)).rowcount
            if n == 1:
                self._event(conn, rollout_id, at, actor, to, detail)
            return n == 1

    def widen(self, rollout_id: str, percent: float, canaries: Iterable[str], at: float, actor: str) -> bool:
        """A larger share while running: the new canaries join the old ones (the hash keeps them)."""
        with self.db.tx() as conn:
            n = self.db.execute(conn, "UPDATE rollouts SET percent = ? WHERE id = ? AND state = 'running' AND "
                                      "percent < ?", (percent, rollout_id, percent)).rowcount
            if n != 1:
                return False
            self.db.executemany(conn, "UPDATE rollout_sites SET canary = ? WHERE rollout = ? AND site = ?",
                                [(True, rollout_id, s) for s in canaries])
            self._event(conn, rollout_id, at, actor, "widened", f"{percent:g} %")
        return True

    def sites(self, rollout_id: str) -> list[RolloutSite]:
        rows = self.db.fetch("SELECT site, province, old_version, new_version, canary, results_old, failed_old, "
                             "results_new, failed_new FROM rollout_sites WHERE rollout = ? ORDER BY site",
                             (rollout_id,))
        return [RolloutSite(r[0], r[1], r[2], r[3], bool(r[4]), int(r[5]), int(r[6]), int(r[7]), int(r[8]))
                for r in rows]

    def add_counts(self, rollout_id: str, counts: dict[str, tuple[int, int, int, int]]) -> None:
        """Add each site's (results_old, failed_old, results_new, failed_new) since the last flush."""
        if not counts:
            return
        with self.db.tx() as conn:
            self.db.executemany(conn, "UPDATE rollout_sites SET results_old = results_old + ?, failed_old = "
                                      "failed_old + ?, results_new = results_new + ?, failed_new = failed_new + ? "
                                      "WHERE rollout = ? AND site = ?",
                                [(*c, rollout_id, site) for site, c in sorted(counts.items())])

    def events(self, rollout_id: str) -> list[RolloutEvent]:
        rows = self.db.fetch("SELECT at, actor, action, detail FROM rollout_events WHERE rollout = ? ORDER BY at, id",
                             (rollout_id,))
        return [RolloutEvent(float(r[0]), r[1], r[2], r[3]) for r in rows]

    def last_reports(self) -> dict[str, float]:
        """Each site's last report (the collector's clock), from the store's site_state."""
        return {r[0]: float(r[1]) for r in self.db.fetch("SELECT site, last_report_at FROM site_state")}

    def applied(self) -> dict[str, tuple[str, str]]:
        """Each site's applied config version and apply error, as persisted by the fleet tracker."""
        return {r[0]: (r[1], r[2]) for r in self.db.fetch("SELECT site, config_version, config_error "
                                                          "FROM fleet_agents")}
