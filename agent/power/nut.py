"""A small client for the Network UPS Tools network protocol (upsd, TCP 3493).

The protocol is line based: ``LIST VAR <ups>`` answers ``BEGIN LIST VAR``,
one ``VAR <ups> <name> "<value>"`` line per variable and ``END LIST VAR``;
errors are ``ERR <CODE>``. Values are double-quoted with backslash escapes for
``"`` and ``\\``, which is exactly POSIX shell double-quoting, so ``shlex``
parses them. Every read is bounded (line length, line count), so a server
that talks forever ends the round with an error, not an out-of-memory agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex

from commune_agent.probes.base import ProbeError

MAX_LINE = 64 * 1024
MAX_VARS = 10_000

# what upsd's error codes mean to someone fixing the site (docs: net-protocol.txt)
_ERRORS = {
    "UNKNOWN-UPS": "upsd does not know this UPS name (see ups.conf / upsc -l)",
    "DATA-STALE": "the UPS driver has lost contact with the UPS (data is stale)",
    "DRIVER-NOT-CONNECTED": "upsd has no connection to the UPS driver",
    "ACCESS-DENIED": "upsd refused access (check username/password and upsd.users)",
    "USERNAME-REQUIRED": "upsd wants a username first",
    "PASSWORD-REQUIRED": "upsd wants a password first",
    "INVALID-USERNAME": "upsd refused the username",
    "INVALID-PASSWORD": "upsd refused the password",
}


class NutError(ProbeError):
    """upsd answered ERR, or broke the protocol."""


def parse_var_line(line: str, ups: str) -> tuple[str, str]:
    """``VAR ups battery.charge "100"`` -> ``('battery.charge', '100')``."""
    try:
        parts = shlex.split(line, posix=True)
    except ValueError as exc:
        raise NutError(f"unreadable line from upsd ({exc}): {line[:80]!r}") from None
    if len(parts) != 4 or parts[0] != "VAR" or parts[1] != ups:
        raise NutError(f"unexpected line from upsd in LIST VAR {ups}: {line[:80]!r}")
    return parts[2], parts[3]


def error_message(line: str) -> str:
    code = line.split()[1] if len(line.split()) > 1 else "?"
    return f"upsd answered ERR {code}: {_ERRORS.get(code, 'see the NUT network protocol docs')}"


class NutClient:
    """One connection to upsd for one round: connect, optional login, LIST VAR, LOGOUT."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> NutClient:
        try:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port, limit=MAX_LINE)
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise NutError(f"cannot connect to upsd at {self.host}:{self.port}: {reason}") from None
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._writer is None:
            return
        with contextlib.suppress(OSError, ConnectionError):
            self._writer.write(b"LOGOUT\n")
            await self._writer.drain()
        self._writer.close()
        with contextlib.suppress(OSError, ConnectionError):
            await self._writer.wait_closed()

    async def _line(self) -> str:
        assert self._reader is not None
        try:
            raw = await self._reader.readuntil(b"\n")
        except asyncio.IncompleteReadError:
            raise NutError(f"upsd at {self.host}:{self.port} closed the connection") from None
        except asyncio.LimitOverrunError:
            raise NutError(f"upsd at {self.host}:{self.port} sent a line longer than {MAX_LINE} bytes") from None
        return raw.decode("utf-8", errors="replace").rstrip("\r\n")

    async def _command(self, line: str) -> str:
        assert self._writer is not None
        self._writer.write(line.encode() + b"\n")
        await self._writer.drain()
        return await self._line()

    async def login(self, username: str, password: str) -> None:
        """USERNAME/PASSWORD: only needed where upsd is set up to ask for it."""
        for command, value in (("USERNAME", username), ("PASSWORD", password)):
            if any(c in value for c in "\r\n"):
                raise NutError(f"the NUT {command.lower()} must not contain a line break")
            answer = await self._command(f"{command} {_quote(value)}")
            if answer.startswith("ERR"):
                raise NutError(error_message(answer))

    async def list_vars(self, ups: str) -> dict[str, str]:
        """Every variable of one UPS, as text."""
        first = await self._command(f"LIST VAR {_quote(ups)}")
        if first.startswith("ERR"):
            raise NutError(error_message(first))
        if first != f"BEGIN LIST VAR {ups}":
            raise NutError(f"unexpected answer from upsd to LIST VAR {ups}: {first[:80]!r}")
        found: dict[str, str] = {}
        while True:
            line = await self._line()
            if line == f"END LIST VAR {ups}":
                return found
            if line.startswith("ERR"):
                raise NutError(error_message(line))
            name, value = parse_var_line(line, ups)
            found[name] = value
            if len(found) > MAX_VARS:
                raise NutError(f"upsd sent more than {MAX_VARS} variables for {ups}")


def _quote(value: str) -> str:
    """Quote a word the way upsd's parser expects (same rules as it uses for values)."""
    if value and all(c.isalnum() or c in "._-@:" for c in value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
