"""Operators' credentials in SQL, shared by SQLite and PostgreSQL (table from migration ``0400_operators``).

A mixin of :class:`~commune_collector.store.sql.SqlStore`: the same writer and
readers as every other table, so a credential is durable before ``operator
create`` prints it.
"""

from __future__ import annotations

from typing import Any

from commune_collector.store.base import OperatorRecord

OPERATOR_COLUMNS = "id, name, role, province, hash, created_at, expires_at, revoked_at"


def _record(row: Any) -> OperatorRecord:
    return OperatorRecord(row[0], row[1], row[2], row[3], row[4], float(row[5]),
                          None if row[6] is None else float(row[6]), None if row[7] is None else float(row[7]))


class OperatorSql:
    """The Store protocol's operator methods over SqlStore's ``_write``/``_read``/``_exec``."""

    _write: Any
    _read: Any
    _exec: Any

    def add_operator(self, record: OperatorRecord) -> None:
        def job(conn: Any) -> None:
            self._exec(conn, f"INSERT INTO operator_tokens ({OPERATOR_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (record.id, record.name, record.role, record.province, record.hash, record.created_at,
                        record.expires_at, record.revoked_at))
        self._write(job)

    def get_operator(self, token_id: str) -> OperatorRecord | None:
        rows = self._read(f"SELECT {OPERATOR_COLUMNS} FROM operator_tokens WHERE id = ?", (token_id,))
        return _record(rows[0]) if rows else None

    def revoke_operators(self, name_or_token_id: str, at: float) -> int:
        def job(conn: Any) -> int:
            cur = self._exec(conn, "UPDATE operator_tokens SET revoked_at = ? "
                                   "WHERE (id = ? OR name = ?) AND revoked_at IS NULL",
                             (at, name_or_token_id, name_or_token_id))
            return int(cur.rowcount)
        return int(self._write(job))

    def list_operators(self, name: str | None = None) -> list[OperatorRecord]:
        where, params = ("WHERE name = ?", [name]) if name else ("", [])
        rows = self._read(f"SELECT {OPERATOR_COLUMNS} FROM operator_tokens {where} ORDER BY created_at DESC, id",
                          params)
        return [_record(r) for r in rows]
