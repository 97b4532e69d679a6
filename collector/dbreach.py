"""PostgreSQL out of reach, said in one line that names where the collector looked.

A collector command run while the database is down, or with a mistyped DSN,
should tell the operator which host and port it tried, not print psycopg's
traceback. The DSN's password is never shown.
"""

from __future__ import annotations


def dsn_target(dsn: str) -> str:
    """'host H port P, database D, user U' from a DSN (URL or key=value), without the password."""
    try:
        from psycopg.conninfo import conninfo_to_dict

        parts = conninfo_to_dict(dsn)
    except Exception:  # an unparsable DSN: say so rather than echo it (it may hold a password)
        return "an unparsable database.dsn"
    host = parts.get("host") or parts.get("hostaddr") or "the local socket"
    shown = [f"host {host}", f"port {parts.get('port') or 5432}"]
    shown += [f"{key} {parts[key]}" for key in ("dbname", "user") if parts.get(key)]
    return ", ".join(shown)


def ping(dsn: str, timeout: float = 10.0) -> None:
    """Connect once and close: psycopg's OperationalError when the database is out of reach."""
    import psycopg

    psycopg.connect(dsn, connect_timeout=max(2, int(timeout))).close()


def unreachable_message(exc: BaseException, dsn: str | None, config: str | None) -> str | None:
    """One line for a PostgreSQL connection failure (psycopg's OperationalError), else None."""
    if type(exc).__module__.split(".")[0] != "psycopg" or type(exc).__name__ != "OperationalError":
        return None
    where = dsn_target(dsn) if dsn else "the configured database"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    first = first.removeprefix("connection failed: ")
    return (f"cannot reach PostgreSQL at {where} (database.dsn in {config or 'the config'}): {first}; "
            "check that PostgreSQL runs there and accepts this collector's connections")
