"""One SNMP engine for every device: GET, and table walks with GETBULK.

pysnmp's ``SnmpEngine`` owns the UDP socket, the request ids and the SNMPv3
engine discovery and key cache; one engine shared by all devices costs one
socket, not one per device, and localizes each v3 key once. A per-device
semaphore bounds how many requests are in flight to a device, because the
small switches and UPS cards at a commune answer one request at a time and
drop the rest.

Walks ask for several table columns in one GETBULK (as ``snmptable`` does),
so a 60-interface ifTable/ifXTable takes a handful of round trips, and every
walk is bounded by ``max_rows``: a device that returns a huge or endless table
ends the round with an error instead of growing memory without limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pysnmp.proto import errind, rfc1905

from commune_agent.snmp.errors import (
    SnmpAuthError,
    SnmpError,
    SnmpProtocolError,
    SnmpStatusError,
    SnmpTimeout,
    SnmpTooManyRows,
)
from commune_agent.snmp.settings import SnmpSettings

GET_CHUNK = 20  # varbinds per GET request: small enough for any device's PDU size
DEFAULT_MAX_ROWS = 10_000

_AUTH = {"SHA": "USM_AUTH_HMAC96_SHA", "SHA-224": "USM_AUTH_HMAC128_SHA224", "SHA-256": "USM_AUTH_HMAC192_SHA256",
         "SHA-384": "USM_AUTH_HMAC256_SHA384", "SHA-512": "USM_AUTH_HMAC384_SHA512"}
_PRIV = {"AES": "USM_PRIV_CFB128_AES", "AES-128": "USM_PRIV_CFB128_AES", "AES-192": "USM_PRIV_CFB192_AES_BLUMENTHAL",
         "AES-256": "USM_PRIV_CFB256_AES_BLUMENTHAL", "AES-192-C": "USM_PRIV_CFB192_AES",
         "AES-256-C": "USM_PRIV_CFB256_AES"}
_AUTH_FAILURES = (errind.WrongDigest, errind.UnknownUserName, errind.UnsupportedSecurityLevel,
                  errind.DecryptionError, errind.UnknownSecurityName, errind.AuthenticationFailure,
                  errind.AuthenticationError, errind.NotInTimeWindow, errind.NoEncryption,
                  errind.NoAuthentication, errind.UnsupportedAuthProtocol, errind.UnsupportedPrivProtocol)
_END = (rfc1905.EndOfMibView,)

Table = dict[str, dict[str, Any]]  # column OID -> {row index ("1", "3.7", ...): value}


@dataclass(frozen=True)
class Device:
    """Where and how to reach one SNMP agent."""

    host: str
    settings: SnmpSettings

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.settings.port}"


def _api() -> Any:
    """pysnmp's high-level API, imported on first use: it costs tens of megabytes of memory,
    which a site without SNMP devices should not pay (the same reason http.py imports httpx late)."""
    import pysnmp.hlapi.v3arch.asyncio as hlapi

    return hlapi


def _oid_tuple(oid: str) -> tuple[int, ...]:
    return tuple(int(part) for part in oid.strip(".").split("."))


def _auth_data(device: Device) -> Any:
    """pysnmp credentials, built fresh each round so a rotated key file takes effect."""
    hl, settings = _api(), device.settings
    if settings.version in ("1", "2c"):
        return hl.CommunityData(settings.community_value() or "", mpModel=0 if settings.version == "1" else 1)
    auth_key, priv_key = settings.auth_key_value(), settings.priv_key_value()
    return hl.UsmUserData(settings.user, authKey=auth_key, privKey=priv_key,
                          authProtocol=getattr(hl, _AUTH[settings.auth_protocol] if auth_key else "USM_AUTH_NONE"),
                          privProtocol=getattr(hl, _PRIV[settings.priv_protocol] if priv_key else "USM_PRIV_NONE"))


def _v3_fingerprint(auth: Any) -> str:
    """A digest of a v3 user's keys and protocols, to tell key sets apart without keeping them."""
    parts = (auth.userName, str(auth.authentication_protocol), str(auth.authentication_key),
             str(auth.privacy_protocol), str(auth.privacy_key))
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _key_source(device: Device) -> str:
    """Where a device's v3 keys come from: new keys from the same place are a rotation.

    The protocols are part of it: two entries naming the same user and key files with other
    protocols are two key sets (one of them misconfigured), not one rotated, and must never
    evict or borrow each other's localized keys.
    """
    s = device.settings
    inline = _digest(s.auth_key, s.priv_key)
    return "\0".join(map(str, (device.address, s.user, s.auth_protocol, s.priv_protocol, s.auth_key_file,
                                s.auth_key_env, s.priv_key_file, s.priv_key_env, inline)))


def _digest(*secrets: Any) -> str:
    values = [x.get_secret_value() if x is not None else "" for x in secrets]
    return hashlib.sha256("\0".join(values).encode()).hexdigest()


@dataclass(frozen=True)
class _Request:
    """What every request of one round to one device shares."""

    engine: Any
    address_name: str
    context: Any


def _lcd() -> Any:
    """pysnmp's configurator that registers credentials and targets in an engine (once each)."""
    from pysnmp.hlapi.v3arch.asyncio.cmdgen import LCD  # memory: pysnmp on first use, see _api

    return LCD


@dataclass
class _EngineSlot:
    """One pysnmp engine and the v3 key set each user name stands for on it."""

    engine: Any
    users: dict[str, tuple[str, set[str]]] = field(default_factory=dict)  # user -> (fingerprint, key sources)


class SnmpClient:
    """The shared engine. Make it with ``snmp_client(ctx)``; ``close()`` at shutdown.

    pysnmp keeps one set of keys per SNMPv3 user name in an engine, so two
    devices with the same user name but different keys cannot share one: the
    second key set gets a second engine. Every v1/v2c device, and every v3
    device whose user name means one key set, shares the first.
    """

    def __init__(self) -> None:
        self._slots: list[_EngineSlot] = []
        self._limits: dict[str, asyncio.Semaphore] = {}
        self.requests: dict[str, int] = {}  # device address -> requests sent (round trips, for tests and benchmarks)
        self.peak_in_flight: dict[str, int] = {}  # device address -> most requests in flight at once
        self._in_flight: dict[str, int] = {}

    @property
    def engine(self) -> Any:
        """The shared pysnmp SnmpEngine, made on first use."""
        if not self._slots:
            self._slots.append(_EngineSlot(_api().SnmpEngine()))
        return self._slots[0].engine

    @property
    def engines(self) -> int:
        """How many engines exist (1 unless v3 user names are reused with other keys)."""
        return len(self._slots)

    def close(self) -> None:
        for slot in self._slots:
            slot.engine.close_dispatcher()
        self._slots.clear()

    def _engine_for(self, device: Device, auth: Any) -> Any:
        """The engine where this device's credentials cannot clash with another device's."""
        if device.settings.version != "3":
            return self.engine
        user, fingerprint, source = auth.userName, _v3_fingerprint(auth), _key_source(device)
        self.engine  # noqa: B018 - make the first slot
        for slot in self._slots:  # keys read from the same files that changed (rotation) give up the old entry
            entry = slot.users.get(user)
            if entry and entry[0] != fingerprint and source in entry[1]:
                entry[1].discard(source)
                if not entry[1]:
                    del slot.users[user]
        for slot in self._slots:
            entry = slot.users.setdefault(user, (fingerprint, set()))
            if entry[0] == fingerprint:
                entry[1].add(source)
                return slot.engine
        self._slots.append(_EngineSlot(_api().SnmpEngine(), {user: (fingerprint, {source})}))
        return self._slots[-1].engine

    @contextlib.asynccontextmanager
    async def _request_slot(self, device: Device) -> AsyncIterator[None]:
        """Hold one of the device's request slots (``max_concurrent``) for one request."""
        key = device.address
        sem = self._limits.get(key)
        if sem is None:
            sem = self._limits[key] = asyncio.Semaphore(device.settings.max_concurrent)
        async with sem:
            self.requests[key] = self.requests.get(key, 0) + 1
            self._in_flight[key] = self._in_flight.get(key, 0) + 1
            self.peak_in_flight[key] = max(self.peak_in_flight.get(key, 0), self._in_flight[key])
            try:
                yield
            finally:
                self._in_flight[key] -= 1

    async def _target(self, device: Device) -> Any:
        kind = _api().Udp6TransportTarget if ":" in device.host else _api().UdpTransportTarget
        try:
            return await kind.create((device.host, device.settings.port), timeout=device.settings.timeout,
                                     retries=device.settings.retries)
        except Exception as exc:  # pysnmp wraps resolver errors in PySnmpError
            raise SnmpError(f"cannot resolve {device.host}: {exc}") from None

    async def _prepare(self, device: Device) -> _Request:
        """Credentials, transport and engine for this round's requests to one device."""
        hl, auth = _api(), _auth_data(device)
        engine, target = self._engine_for(device, auth), await self._target(device)
        # the low-level generators take raw OIDs: the high-level get_cmd/bulk_cmd resolve every
        # OID against the MIB tree even with lookupMib=False, which cost a third of a walk's CPU
        address_name, _ = _lcd().configure(engine, auth, target, device.settings.context)
        return _Request(engine, address_name, hl.ContextData(contextName=device.settings.context))

    async def _send(self, device: Device, request: _Request, kind: str,
                    oids: Sequence[tuple[int, ...]]) -> tuple[Any, Any, Any, Any]:
        """One PDU; returns pysnmp's (errorIndication, errorStatus, errorIndex, varBinds)."""
        # memory: pysnmp on first use, see _api
        from pysnmp.entity.rfc3413 import cmdgen
        from pysnmp.proto.rfc1902 import Null, ObjectName

        future: asyncio.Future[tuple[Any, Any, Any, Any]] = asyncio.get_running_loop().create_future()

        def done(_engine: Any, _handle: Any, indication: Any, status: Any, index: Any, binds: Any, _ctx: Any) -> None:
            if not future.done():  # a round cancelled by its timeout leaves the answer unread
                future.set_result((indication, status, index, binds))

        binds = [(ObjectName(oid), Null("")) for oid in oids]
        context = request.context
        async with self._request_slot(device):
            if kind == "GETBULK":
                cmdgen.BulkCommandGenerator().send_varbinds(
                    request.engine, request.address_name, context.contextEngineId, context.contextName, 0,
                    device.settings.max_repetitions, binds, done, None)
            else:
                generator = cmdgen.GetCommandGenerator() if kind == "GET" else cmdgen.NextCommandGenerator()
                generator.send_varbinds(request.engine, request.address_name, context.contextEngineId,
                                        context.contextName, binds, done, None)
            return await future

    def _check(self, device: Device, reply: tuple[Any, Any, Any, Any], what: str) -> Sequence[Any]:
        """Turn pysnmp's (errorIndication, errorStatus, errorIndex, varBinds) into binds or an error."""
        indication, status, index, binds = reply
        if indication:
            if isinstance(indication, errind.RequestTimedOut):
                s = device.settings
                raise SnmpTimeout(f"no SNMP reply from {device.address} to {what} within {s.timeout:g}s "
                                  f"x {s.retries + 1} tries")
            if isinstance(indication, _AUTH_FAILURES):
                raise SnmpAuthError(f"SNMPv3 user {device.settings.user!r} refused by {device.address}: "
                                    f"{indication} (check user, auth/priv protocol and keys)")
            raise SnmpError(f"SNMP {what} to {device.address} failed: {indication}")
        if status and int(status) != 0:
            where = ""
            if index and 0 < int(index) <= len(binds):
                where = f" at {binds[int(index) - 1][0]}"
            raise SnmpStatusError(f"{device.address} answered {what} with error-status "
                                  f"{status.prettyPrint() if hasattr(status, 'prettyPrint') else status}{where}")
        return binds

    async def get(self, device: Device, oids: Sequence[str]) -> dict[str, Any]:
        """GET each OID; the value is pysnmp's object, or noSuchObject/noSuchInstance when absent."""
        request = await self._prepare(device)
        out: dict[str, Any] = {}
        for start in range(0, len(oids), GET_CHUNK):
            chunk = oids[start:start + GET_CHUNK]
            reply = await self._send(device, request, "GET", [_oid_tuple(o) for o in chunk])
            binds = self._check(device, reply, "GET")
            for oid, (_, value) in zip(chunk, binds, strict=False):
                out[oid] = value
        return out

    async def walk(self, device: Device, columns: Sequence[str], *, max_rows: int = DEFAULT_MAX_ROWS) -> Table:
        """Every row of the given table columns; absent columns come back empty.

        The columns are split into as many groups as the device allows requests in flight
        (``max_concurrent``), each group walked together in one GETBULK stream: while one
        answer is decoded here the device is already working on the next request.
        """
        if device.settings.version == "1":
            return {col: await self._walk_v1(device, col, max_rows) for col in columns}
        request = await self._prepare(device)
        lanes = max(1, min(device.settings.max_concurrent, len(columns)))
        groups = [list(columns[i::lanes]) for i in range(lanes)]
        tasks = [asyncio.ensure_future(self._walk_group(device, request, group, max_rows)) for group in groups]
        try:
            parts = await asyncio.gather(*tasks)
        finally:
            for task in tasks:  # one group failed: stop the others (no-op for those done)
                task.cancel()
        table: Table = {col: rows for part in parts for col, rows in part.items()}
        return {col: table[col] for col in columns}

    async def _walk_group(self, device: Device, request: _Request, columns: list[str], max_rows: int) -> Table:
        prefixes = {col: _oid_tuple(col) for col in columns}
        table: Table = {col: {} for col in columns}
        cursor: dict[str, tuple[int, ...]] = dict(prefixes)  # column -> last OID seen (where to go on)
        while cursor:
            cols = list(cursor)
            reply = await self._send(device, request, "GETBULK", [cursor[c] for c in cols])
            binds = self._check(device, reply, "GETBULK")
            if not binds:
                raise SnmpProtocolError(f"{device.address} answered GETBULK with no variables")
            self._absorb(device, cols, binds, prefixes, cursor, table, max_rows)
        return table

    @staticmethod
    def _absorb(device: Device, cols: list[str], binds: Sequence[Any], prefixes: dict[str, tuple[int, ...]],
                cursor: dict[str, tuple[int, ...]], table: Table, max_rows: int) -> None:
        """File one GETBULK answer (row-major: rep 0 of every column, then rep 1, ...) into the table."""
        width = len(cols)
        for i, (name, value) in enumerate(binds):
            col = cols[i % width]
            if col not in cursor:
                continue  # this column ended earlier in the same answer
            oid = tuple(name)
            prefix = prefixes[col]
            if isinstance(value, _END) or oid[:len(prefix)] != prefix:
                del cursor[col]
                continue
            if oid <= cursor[col]:
                raise SnmpProtocolError(f"{device.address} answered OIDs out of order in {col} "
                                        f"({'.'.join(map(str, oid))} after {'.'.join(map(str, cursor[col]))})")
            rows = table[col]
            rows[".".join(map(str, oid[len(prefix):]))] = value
            cursor[col] = oid
            if len(rows) > max_rows:
                raise SnmpTooManyRows(f"{device.address} returned more than {max_rows} rows in {col}; "
                                      "raise max_rows if the device really has that many")

    async def _walk_v1(self, device: Device, column: str, max_rows: int) -> dict[str, Any]:
        """SNMPv1 has no GETBULK: one GETNEXT per row; noSuchName marks the end of the MIB."""
        request = await self._prepare(device)
        prefix = _oid_tuple(column)
        rows: dict[str, Any] = {}
        last = prefix
        while True:
            indication, status, index, binds = await self._send(device, request, "GETNEXT", [last])
            if not indication and status and int(status) == 2:  # noSuchName: past the last object
                return rows
            binds = self._check(device, (indication, status, index, binds), "GETNEXT")
            if not binds:
                return rows
            name, value = binds[0]
            oid = tuple(name)
            if isinstance(value, _END) or oid[:len(prefix)] != prefix:
                return rows
            if oid <= last:
                raise SnmpProtocolError(f"{device.address} answered OIDs out of order in {column}")
            rows[".".join(map(str, oid[len(prefix):]))] = value
            last = oid
            if len(rows) > max_rows:
                raise SnmpTooManyRows(f"{device.address} returned more than {max_rows} rows in {column}")


def snmp_client(ctx: Any) -> SnmpClient:
    """The engine every probe shares through ``ProbeContext.resources``."""
    return ctx.resource("snmp", SnmpClient)
