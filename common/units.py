"""Field types shared by every config file: durations, hosts, byte sizes.

Durations are written the Prometheus way (``30s``, ``5m``, ``1h30m``, ``500ms``)
and held as float seconds, so no code ever has to guess a unit.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_HOSTNAME = re.compile(r"^(?=.{1,253}$)(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?$")
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*(B|KB|KiB|MB|MiB|GB|GiB)?$")
_SIZE_BYTES = {None: 1, "B": 1, "KB": 1000, "KiB": 1024, "MB": 1000**2, "MiB": 1024**2,
               "GB": 1000**3, "GiB": 1024**3}


def parse_duration(value: object) -> float:
    """``'1h30m'`` -> 5400.0. Bare numbers are refused: a unit is always required."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError("is not a duration (use 30s, 5m)")
    text = value.strip()
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError("is not a duration (use 30s, 5m)")
    return total


def format_duration(seconds: float) -> str:
    """5400.0 -> ``'1h30m'``; the inverse of parse_duration for whole units."""
    if seconds < 1 and seconds > 0:
        return f"{round(seconds * 1000)}ms"
    rest, out = int(round(seconds)), ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            out += f"{rest // size}{unit}"
            rest %= size
    return out or "0s"


def parse_host(value: object) -> str:
    """An IPv4/IPv6 address or an RFC 1123 host name; anything else is refused."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("is not a host name or IP address")
    text = value.strip()
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        pass
    if _HOSTNAME.match(text) and not text.replace(".", "").isdigit():
        return text
    raise ValueError("is not a host name or IP address")


def parse_size(value: object) -> int:
    """``'64MiB'`` -> 67108864; bare integers are bytes."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    match = _SIZE.match(str(value).strip()) if isinstance(value, str) else None
    if not match:
        raise ValueError("is not a size (use 512KiB, 64MiB, 1GiB)")
    return int(float(match.group(1)) * _SIZE_BYTES[match.group(2)])


Duration = Annotated[float, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)]
Host = Annotated[str, BeforeValidator(parse_host)]
ByteSize = Annotated[int, BeforeValidator(parse_size)]
