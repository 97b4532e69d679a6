"""Typed reading of SNMP reply values: the right type or a clear error naming the OID.

Devices answer with whatever their firmware thinks; a counter sent as an
OCTET STRING must fail the round with ``<oid>: expected Counter64, the device
answered OctetString``, never crash a probe or become a silent zero.
"""

from __future__ import annotations

from typing import Any

from pyasn1.type import univ
from pysnmp.proto import rfc1902, rfc1905

from commune_agent.snmp.errors import SnmpTypeError

_EXCEPTIONS = (rfc1905.NoSuchObject, rfc1905.NoSuchInstance, rfc1905.EndOfMibView)
_INTEGERS = (rfc1902.Integer32, rfc1902.Integer, rfc1902.Unsigned32, rfc1902.Gauge32, rfc1902.Counter32,
             rfc1902.Counter64, rfc1902.TimeTicks, univ.Integer)
_COUNTERS = (rfc1902.Counter32, rfc1902.Counter64)


def is_missing(value: Any) -> bool:
    """noSuchObject, noSuchInstance or endOfMibView: the device has no value here."""
    return value is None or isinstance(value, _EXCEPTIONS)


def integer(oid: str, value: Any) -> int:
    """Any SNMP integer type (INTEGER, Gauge32, Counter32/64, TimeTicks, Unsigned32)."""
    if isinstance(value, _INTEGERS) and not isinstance(value, _EXCEPTIONS):
        return int(value)
    raise SnmpTypeError(oid, "an integer", value)


def counter(oid: str, value: Any) -> tuple[int, int]:
    """A Counter32 or Counter64, with its width in bits (for wrap handling)."""
    if isinstance(value, rfc1902.Counter64):
        return int(value), 64
    if isinstance(value, rfc1902.Counter32):
        return int(value), 32
    raise SnmpTypeError(oid, "Counter32 or Counter64", value)


def counter64(oid: str, value: Any) -> int:
    if isinstance(value, rfc1902.Counter64):
        return int(value)
    raise SnmpTypeError(oid, "Counter64", value)


def timeticks_seconds(oid: str, value: Any) -> float:
    """TimeTicks (hundredths of a second) as seconds."""
    if isinstance(value, rfc1902.TimeTicks | rfc1902.Integer32 | univ.Integer) and not isinstance(value, _COUNTERS):
        return int(value) / 100.0
    raise SnmpTypeError(oid, "TimeTicks", value)


def text(oid: str, value: Any) -> str:
    """An OCTET STRING as text: UTF-8 where it decodes, Latin-1 otherwise, trailing NULs dropped."""
    if not isinstance(value, univ.OctetString) or isinstance(value, _EXCEPTIONS):
        raise SnmpTypeError(oid, "OctetString", value)
    raw = bytes(value.asOctets()).rstrip(b"\x00")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def octets(oid: str, value: Any) -> bytes:
    if not isinstance(value, univ.OctetString) or isinstance(value, _EXCEPTIONS):
        raise SnmpTypeError(oid, "OctetString", value)
    return bytes(value.asOctets())


def number(oid: str, value: Any) -> float:
    """A number from an integer type, or from text that spells one (UCD laLoad sends "0.15")."""
    if isinstance(value, _INTEGERS) and not isinstance(value, _EXCEPTIONS):
        return float(int(value))
    if isinstance(value, univ.OctetString) and not isinstance(value, _EXCEPTIONS):
        try:
            return float(bytes(value.asOctets()).decode("ascii").strip())
        except (UnicodeDecodeError, ValueError):
            pass
        raise SnmpTypeError(oid, "a number", value)
    raise SnmpTypeError(oid, "a number", value)


def type_name(value: Any) -> str:
    return type(value).__name__
