"""TCP connect: can a service on the far side be reached, and how fast does it answer."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from typing import Literal

from pydantic import Field

from commune_agent.probes.base import (
    MetricDoc,
    ProbeContext,
    ProbeError,
    ProbeResult,
    ProbeSpec,
    TargetConfig,
    sample,
)
from commune_agent.probes.resolve import bound_socket, resolve
from commune_common.units import Host


class TcpConfig(TargetConfig):
    probe: Literal["tcp"]
    host: Host
    port: int = Field(ge=1, le=65535)
    ip_protocol: Literal["auto", "ip4", "ip6"] = "auto"

    def display_name(self) -> str:
        return self.name or f"{self.host}:{self.port}"


async def run(cfg: TcpConfig, ctx: ProbeContext) -> ProbeResult:
    address, family = await resolve(cfg.host, cfg.ip_protocol)
    sock = bound_socket(family, socket.SOCK_STREAM, ctx.binding.source_address, ctx.binding.interface)
    start = time.perf_counter()
    try:
        await asyncio.get_running_loop().sock_connect(sock, (address, cfg.port))
    except OSError as exc:
        raise ProbeError(f"connect to {address}:{cfg.port} failed: {os.strerror(exc.errno) if exc.errno else exc}") from None
    finally:
        sock.close()
    elapsed = time.perf_counter() - start
    return ProbeResult(ok=True, samples=(sample("tcp_connect_seconds", elapsed),), info={"address": address})


SPEC = ProbeSpec(
    kind="tcp",
    config=TcpConfig,
    run=run,
    summary="TCP connect time and success",
    metrics=(MetricDoc("tcp_connect_seconds", "Time to complete the TCP handshake."),),
)
