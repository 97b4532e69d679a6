"""Name resolution shared by the network probes."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

from commune_agent.probes.base import ProbeError

_FAMILIES = {"ip4": (socket.AF_INET,), "ip6": (socket.AF_INET6,), "auto": (socket.AF_INET6, socket.AF_INET)}


async def resolve(host: str, ip_protocol: str = "auto") -> tuple[str, int]:
    """An address for ``host`` as a canonical string, and its family.

    ``auto`` takes what the resolver lists first (it already orders by RFC 6724).
    """
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        if family not in _FAMILIES[ip_protocol]:
            raise ProbeError(f"{host} is not an {ip_protocol} address")
        return str(ip), family
    want = {"ip4": socket.AF_INET, "ip6": socket.AF_INET6}.get(ip_protocol, socket.AF_UNSPEC)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, family=want, type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise ProbeError(f"cannot resolve {host}: {exc.strerror}") from None
    if not infos:
        raise ProbeError(f"cannot resolve {host}: no address")
    family, _, _, _, sockaddr = infos[0]
    return str(ipaddress.ip_address(sockaddr[0])), family


def bound_socket(family: int, kind: int, source_address: str | None, interface: str | None) -> socket.socket:
    """A non-blocking socket bound to the link's source address and/or interface."""
    sock = socket.socket(family, kind)
    try:
        sock.setblocking(False)
        if interface:
            sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_BINDTODEVICE", 25), interface.encode() + b"\0")
        if source_address:
            sock.bind((source_address, 0))
    except OSError as exc:
        sock.close()
        raise ProbeError(f"cannot bind to {interface or source_address}: {exc.strerror}") from None
    return sock
