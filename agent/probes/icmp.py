"""ICMP echo: a round of N echo requests to one target.

Reports RTT min/avg/max and standard deviation, jitter (mean absolute
difference of consecutive RTTs, the per-packet delay variation RFC 3550
smooths) and loss ratio. The socket work lives in ``commune_agent.icmp_engine`` so all
targets share one socket per address family.
"""

from __future__ import annotations

import asyncio
import math
import operator
import socket
from typing import Literal

from pydantic import Field

# a module reference, not a name: agent.icmp_engine imports agent.probes, which loads this module
from commune_agent import icmp_engine
from commune_agent.probes.base import (
    MetricDoc,
    ProbeContext,
    ProbeResult,
    ProbeSpec,
    Sample,
    TargetConfig,
)
from commune_agent.probes.resolve import resolve
from commune_common.units import Duration, Host


class IcmpConfig(TargetConfig):
    probe: Literal["icmp"]
    host: Host
    count: int = Field(default=5, ge=1, le=100, description="echo requests per round")
    packet_interval: Duration = Field(default=0.2, description="time between echo requests of one round")
    echo_timeout: Duration = Field(default=2.0, description="how long to wait for each reply")
    ip_protocol: Literal["auto", "ip4", "ip6"] = "auto"

    def display_name(self) -> str:
        return self.name or self.host


def rtt_stats(rtts: list[float | None]) -> dict[str, float]:
    """Loss, min/avg/max/stddev (population, like ping's mdev) and jitter of one round.

    Every sum is done in C (fsum, dist, map over operator functions): 500 rounds ending together
    wait for this, and each Python-level comprehension is a frame of its own in Python 3.11.
    """
    got = rtts if None not in rtts else [r for r in rtts if r is not None]
    n = len(got)
    out = {"sent": float(len(rtts)), "received": float(n), "loss": 1.0 - n / len(rtts) if rtts else 1.0}
    if got:
        avg = math.fsum(got) / n
        out["min"], out["avg"], out["max"] = min(got), avg, max(got)
        # the distance from (avg, avg, ...) is sqrt(sum((r - avg) ** 2)), computed without overflow or
        # cancellation; float arithmetic, not statistics.pstdev, whose exact Fractions cost more than the echoes
        out["stddev"] = math.dist(got, (avg,) * n) / math.sqrt(n)
    if n >= 2:
        out["jitter"] = math.fsum(map(abs, map(operator.sub, got[1:], got))) / (n - 1)
    return out


_FAMILIES = {"auto": (socket.AF_INET, socket.AF_INET6), "ip4": (socket.AF_INET,), "ip6": (socket.AF_INET6,)}
# rtt_stats key -> the sample it becomes (labels prebuilt: 500 rounds finishing together feel every object),
# in the order rtt_stats fills its keys: whatever replies came, its keys are a prefix of this table
_SAMPLES = (("sent", "icmp_packets_sent", ()), ("received", "icmp_packets_received", ()),
            ("loss", "icmp_loss_ratio", ()),
            *((stat, "icmp_rtt_seconds", (("stat", stat),)) for stat in ("min", "avg", "max", "stddev")),
            ("jitter", "icmp_jitter_seconds", ()))
_SAMPLE_NAMES = tuple(name for _key, name, _labels in _SAMPLES)
_SAMPLE_LABELS = tuple(labels for _key, _name, labels in _SAMPLES)


def rtt_samples(stats: dict[str, float]) -> tuple[Sample, ...]:
    """The samples of ``rtt_stats``: paired by position, in C, as its keys follow ``_SAMPLES``."""
    return tuple(map(Sample, _SAMPLE_NAMES, stats.values(), _SAMPLE_LABELS))


def ip_literal(host: str, ip_protocol: str) -> tuple[str, int] | None:
    """``host`` and its family when it is an IP address of an allowed family, else None (resolve it).

    Config parsing already turned IP addresses into canonical text (``commune_common.units.Host``),
    so a C-level check is enough here; ``resolve`` parses in Python, which 500 targets feel.
    """
    for family in _FAMILIES[ip_protocol]:
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return host, family
    return None


async def run(cfg: IcmpConfig, ctx: ProbeContext) -> ProbeResult:
    """One round within ``ctx.timeout`` (``self_timed``): a timer is armed only where one could fire."""
    engine: icmp_engine.IcmpEngine = ctx.resource("icmp", icmp_engine.IcmpEngine)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ctx.timeout
    literal = ip_literal(cfg.host, cfg.ip_protocol)
    if literal is None:
        async with asyncio.timeout_at(deadline):
            literal = await resolve(cfg.host, cfg.ip_protocol)
    address, family = literal
    # before the echoes, not after: 500 rounds ending together wait for whatever is left to do then
    info = {"address": address, "socket": engine.socket_kind(family, ctx.binding)}
    ping = engine.ping(address, family, cfg.count, cfg.packet_interval, cfg.echo_timeout, ctx.binding, ctx.due)
    if loop.time() + (cfg.count - 1) * cfg.packet_interval + cfg.echo_timeout <= deadline:
        rtts = await ping  # the engine ends the round by then (the config checks count against timeout)
    else:
        async with asyncio.timeout_at(deadline):
            rtts = await ping
    stats = rtt_stats(rtts)
    ok = stats["received"] > 0
    reason = "" if ok else f"no reply to {len(rtts)} echo requests to {address}"
    return ProbeResult(ok=ok, samples=rtt_samples(stats), reason=reason, info=info)


SPEC = ProbeSpec(
    kind="icmp",
    config=IcmpConfig,
    run=run,
    summary="ICMP echo round: RTT, jitter, loss",
    needs_slot=False,  # a round is a future and a few packets on the engine's shared socket
    self_timed=True,
    metrics=(
        MetricDoc("icmp_rtt_seconds", "Round-trip time of the last round's replies.", ("stat",)),
        MetricDoc("icmp_jitter_seconds", "Mean absolute difference of consecutive RTTs in the last round."),
        MetricDoc("icmp_loss_ratio", "Share of the last round's echo requests with no reply (0-1)."),
        MetricDoc("icmp_packets_sent", "Echo requests sent in the last round."),
        MetricDoc("icmp_packets_received", "Echo replies received in the last round."),
    ),
)
