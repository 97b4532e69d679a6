"""Maintenance windows in SQL, shared by SQLite and PostgreSQL (table from migration ``0500_maintenance``).

A mixin of :class:`~commune_collector.store.sql.SqlStore`. Windows are few
(hundreds a year), so the judge reads the ones that matter whole each pass.
"""

from __future__ import annotations

import json
from typing import Any

from commune_collector.maintenance.windows import MaintenanceWindow

WINDOW_COLUMNS = ("id, scope, targets, sites, provinces, starts_at, ends_at, every, until, reason, created_by, "
                  "created_at, cancelled_at, cancelled_by, cancel_note")


def _opt(value: Any) -> float | None:
    return None if value is None else float(value)


def _window(row: Any) -> MaintenanceWindow:
    return MaintenanceWindow(id=row[0], scope=row[1], targets=tuple(json.loads(row[2])),
                             sites=tuple(json.loads(row[3])), provinces=tuple(json.loads(row[4])),
                             starts_at=float(row[5]), ends_at=float(row[6]), every=row[7], until=_opt(row[8]),
                             reason=row[9], created_by=row[10], created_at=float(row[11]),
                             cancelled_at=_opt(row[12]), cancelled_by=row[13], cancel_note=row[14])


class MaintenanceSql:
    """The Store protocol's maintenance-window methods over SqlStore's ``_write``/``_read``/``_exec``."""

    _write: Any
    _read: Any
    _exec: Any

    def add_window(self, window: MaintenanceWindow) -> None:
        w = window

        def job(conn: Any) -> None:
            self._exec(conn, f"INSERT INTO maintenance_windows ({WINDOW_COLUMNS}) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (w.id, w.scope, json.dumps(list(w.targets)), json.dumps(list(w.sites)),
                        json.dumps(list(w.provinces)), w.starts_at, w.ends_at, w.every, w.until, w.reason,
                        w.created_by, w.created_at, w.cancelled_at, w.cancelled_by, w.cancel_note))
        self._write(job)

    def cancel_window(self, window_id: str, at: float, by: str, note: str | None = None) -> bool:
        """Mark a live window cancelled; False when there is none by that id (or it was cancelled before)."""
        def job(conn: Any) -> int:
            cur = self._exec(conn, "UPDATE maintenance_windows SET cancelled_at = ?, cancelled_by = ?, cancel_note = ? "
                                   "WHERE id = ? AND cancelled_at IS NULL", (at, by, note, window_id))
            return int(cur.rowcount)
        return bool(self._write(job))

    def get_window(self, window_id: str) -> MaintenanceWindow | None:
        rows = self._read(f"SELECT {WINDOW_COLUMNS} FROM maintenance_windows WHERE id = ?", (window_id,))
        return _window(rows[0]) if rows else None

    def list_windows(self, since: float | None = None) -> list[MaintenanceWindow]:
        """Every window that may cover time after ``since`` (all when None), by start then id.

        The filter is coarse (a recurring window or one declared long is kept);
        callers ask each window for its occurrences.
        """
        where, params = ("", [])
        if since is not None:
            where, params = "WHERE ends_at >= ? OR every IS NOT NULL", [since]
        rows = self._read(f"SELECT {WINDOW_COLUMNS} FROM maintenance_windows {where} ORDER BY starts_at, id",
                          params)
        return [_window(r) for r in rows]
