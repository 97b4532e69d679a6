"""A throwaway PostgreSQL cluster on 127.0.0.1:<free port>.

``initdb`` + ``postgres`` from /usr/lib/postgresql/<ver>/bin (15 preferred)
into a temp dir, never the Debian ``main`` cluster.  PostgreSQL refuses to run
as root, so as root the cluster runs as the ``postgres`` OS user and its temp
dir is chowned to it (and created under a directory that user can traverse).
The server listens on 127.0.0.1 only, with its unix socket in the temp dir;
durability is switched off (fsync etc.) because the data is thrown away.

Authentication: unix socket = trust (harness admin work as ``postgres``),
TCP = scram-sha-256, so the exposed DSN really exercises a password login.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ._base import (
    Peer,
    PeerError,
    free_tcp_port,
    peer_fixture,
    random_secret,
    require_binary,
    run_tool,
)

PG_ROOT = Path("/usr/lib/postgresql")
PREFERRED_VERSION = "15"
OS_USER = "postgres"


def pg_bin_dir() -> Path:
    """Directory of initdb/postgres/pg_ctl: version 15 if present, else newest."""
    preferred = PG_ROOT / PREFERRED_VERSION / "bin"
    if (preferred / "initdb").is_file():
        return preferred
    found = sorted(
        (p for p in PG_ROOT.glob("*/bin") if (p / "initdb").is_file()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if found:
        return found[-1]
    require_binary(str(preferred / "initdb"))  # skips, or fails under CI
    raise AssertionError("unreachable")


def _traversable_by_others(path: Path) -> bool:
    """True when every ancestor of ``path`` has the x bit for "other"."""
    for part in [path, *path.parents]:
        if not os.stat(part).st_mode & stat.S_IXOTH:
            return False
    return True


def _base_dir_for(os_user: str | None) -> Path | None:
    """A temp base the cluster's OS user can reach (pytest's tmp may be 0700)."""
    if os_user is None:
        return None
    default = Path(tempfile.gettempdir())
    return default if _traversable_by_others(default) else Path("/tmp")


class PostgresPeer(Peer):
    """Throwaway PostgreSQL; attributes host, port, dbname, user, password, dsn.

    ``admin_dsn`` connects as the ``postgres`` superuser over the socket.
    """

    name = "postgres"

    def __init__(
        self,
        *,
        dbname: str = "commune_test",
        user: str = "commune",
        password: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.os_user = OS_USER if os.geteuid() == 0 else None
        kwargs.setdefault("base_dir", _base_dir_for(self.os_user))
        super().__init__(**kwargs)
        self.port = 0
        self.dbname = dbname
        self.user = user
        self.password = password or random_secret("pw-")
        self.data_dir = self.dir / "data"
        self.socket_dir = self.dir / "sock"
        self._bin: Path | None = None

    @property
    def dsn(self) -> str:
        """``postgresql://user:pass@127.0.0.1:PORT/db`` (password auth over TCP)."""
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.dbname}"

    @property
    def admin_dsn(self) -> str:
        """Superuser DSN over the unix socket in the temp dir (trust auth)."""
        return f"postgresql://postgres@/postgres?host={self.socket_dir}&port={self.port}"

    def _tool(self, name: str) -> str:
        assert self._bin is not None
        return str(self._bin / name)

    def _check_requirements(self) -> None:
        self._bin = pg_bin_dir()
        for tool in ("initdb", "postgres", "pg_ctl"):
            require_binary(self._tool(tool))
        require_binary("pg_isready")
        require_binary("psql")
        if self.os_user is not None:
            try:
                pwd.getpwnam(self.os_user)
            except KeyError as exc:
                raise PeerError(f"OS user {self.os_user!r} missing (install postgresql)") from exc

    def _prepare(self) -> None:
        self.port = free_tcp_port()
        if self.data_dir.exists():
            return  # a retry after a port clash reuses the initialised cluster
        self.socket_dir.mkdir(mode=0o700, exist_ok=True)
        (self.dir / "pwfile").write_text(random_secret("su-") + "\n")
        self._chown_tree()
        run_tool(
            [
                self._tool("initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                f"--pwfile={self.dir / 'pwfile'}",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            user=self.os_user,
            cwd=self.dir,
            timeout=120,
        )

    def _chown_tree(self) -> None:
        """Hand the temp dir to the cluster's OS user (no-op when not root)."""
        if self.os_user is None:
            return
        for path in [self.dir, *self.dir.rglob("*")]:
            shutil.chown(path, self.os_user, self.os_user)

    def _launch(self) -> None:
        self._spawn(
            [
                self._tool("postgres"),
                "-D",
                str(self.data_dir),
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-k",
                str(self.socket_dir),
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=50",
            ],
            user=self.os_user,
        )

    def _is_ready(self) -> bool:
        result = run_tool(
            [require_binary("pg_isready"), "-h", self.host, "-p", str(self.port), "-t", "1"],
            check=False,
        )
        return result.returncode == 0

    def _after_ready(self) -> None:
        """Create the password user and its database, then prove a TCP login."""
        self.psql(
            f"CREATE ROLE {self.user} LOGIN PASSWORD '{self.password}'",
            f"CREATE DATABASE {self.dbname} OWNER {self.user}",
        )
        run_tool([require_binary("psql"), self.dsn, "-tAc", "SELECT 1"], timeout=30)

    def psql(self, *statements: str, dbname: str = "postgres") -> str:
        """Run SQL as the superuser over the socket; returns unaligned output."""
        argv = [
            require_binary("psql"),
            "-v",
            "ON_ERROR_STOP=1",
            "-tA",
            "-h",
            str(self.socket_dir),
            "-p",
            str(self.port),
            "-U",
            "postgres",
            dbname,
        ]
        for sql in statements:
            argv += ["-c", sql]
        return run_tool(argv, timeout=60).stdout.strip()

    def _shutdown(self) -> None:
        """``pg_ctl stop -m fast``: the clean way; the base then checks the PID."""
        run_tool(
            [
                self._tool("pg_ctl"),
                "stop",
                "-D",
                str(self.data_dir),
                "-m",
                "fast",
                "-w",
                "-t",
                "30",
            ],
            user=self.os_user,
            cwd=self.dir,
            timeout=40,
            check=False,
        )


def postgres_fixture(
    *, scope: str = "session", name: str | None = None, **kwargs: Any
) -> Callable[..., Iterator[PostgresPeer]]:
    """A pytest fixture yielding a started :class:`PostgresPeer` (kwargs go to it)."""
    return peer_fixture(lambda: PostgresPeer(**kwargs), scope=scope, name=name)
