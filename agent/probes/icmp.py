"""ICMP echo: a round of N echo requests to one target.

Reports RTT min/avg/max and standard deviation, jitter (mean absolute
difference of consecutive RTTs, the per-packet delay variation RFC 3550
smooths) and loss ratio. The socket work lives in ``agent.icmp_engine`` so all
targets share one socket per address family.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

# a module reference, not a name: agent.icmp_engine imports agent.probes, which loads this module
from agent import icmp_engine
from agent.probes.base import MetricDoc, ProbeContext, ProbeResult, ProbeSpec, TargetConfig, sample
from agent.probes.resolve import resolve
from common.units import Duration, Host


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
    """Loss, min/avg/max/stddev (population, like ping's mdev) and jitter of one round."""
    got = [r for r in rtts if r is not None]
    out = {"sent": float(len(rtts)), "received": float(len(got)),
           "loss": 1.0 - len(got) / len(rtts) if rtts else 1.0}
    if got:
        avg = math.fsum(got) / len(got)
        # float arithmetic, not statistics.pstdev: its exact Fractions cost more than the echoes
        stddev = math.sqrt(math.fsum((r - avg) ** 2 for r in got) / len(got))
        out |= {"min": min(got), "max": max(got), "avg": avg, "stddev": stddev}
    if len(got) >= 2:
        out["jitter"] = math.fsum(abs(b - a) for a, b in zip(got, got[1:], strict=False)) / (len(got) - 1)
    return out


async def run(cfg: IcmpConfig, ctx: ProbeContext) -> ProbeResult:
    engine: icmp_engine.IcmpEngine = ctx.resource("icmp", icmp_engine.IcmpEngine)
    literal = ctx.state.get("literal")  # an IP address as host: parsed once, not every round
    address, family = literal or await resolve(cfg.host, cfg.ip_protocol)
    if literal is None and address == cfg.host:
        ctx.state["literal"] = (address, family)
    rtts = await engine.ping(address, family, cfg.count, cfg.packet_interval, cfg.echo_timeout, ctx.binding)
    stats = rtt_stats(rtts)
    samples = [sample("icmp_packets_sent", stats["sent"]), sample("icmp_packets_received", stats["received"]),
               sample("icmp_loss_ratio", stats["loss"])]
    samples += [sample("icmp_rtt_seconds", stats[k], stat=k) for k in ("min", "avg", "max", "stddev") if k in stats]
    if "jitter" in stats:
        samples.append(sample("icmp_jitter_seconds", stats["jitter"]))
    ok = stats["received"] > 0
    reason = "" if ok else f"no reply to {len(rtts)} echo requests to {address}"
    info = {"address": address, "socket": engine.socket_kind(family, ctx.binding)}
    return ProbeResult(ok=ok, samples=tuple(samples), reason=reason, info=info)


SPEC = ProbeSpec(
    kind="icmp",
    config=IcmpConfig,
    run=run,
    summary="ICMP echo round: RTT, jitter, loss",
    metrics=(
        MetricDoc("icmp_rtt_seconds", "Round-trip time of the last round's replies.", ("stat",)),
        MetricDoc("icmp_jitter_seconds", "Mean absolute difference of consecutive RTTs in the last round."),
        MetricDoc("icmp_loss_ratio", "Share of the last round's echo requests with no reply (0-1)."),
        MetricDoc("icmp_packets_sent", "Echo requests sent in the last round."),
        MetricDoc("icmp_packets_received", "Echo replies received in the last round."),
    ),
)
