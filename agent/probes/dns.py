"""DNS: resolve a name against a named server, optionally expecting an answer."""

from __future__ import annotations

import time
from typing import Literal

import dns.exception
import dns.rdatatype
from pydantic import Field, field_validator

from commune_agent.probes.base import (
    MetricDoc,
    ProbeContext,
    ProbeError,
    ProbeResult,
    ProbeSpec,
    TargetConfig,
    sample,
)
from commune_common.units import Host


class DnsConfig(TargetConfig):
    probe: Literal["dns"]
    server: Host
    port: int = Field(default=53, ge=1, le=65535)
    query: str = Field(min_length=1, description="the name to resolve")
    record_type: str = "A"
    transport: Literal["udp", "tcp"] = "udp"
    expect: list[str] = Field(default_factory=list, description="answers at least one of which must be present")

    @field_validator("record_type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        try:
            dns.rdatatype.from_text(value)
        except dns.rdatatype.UnknownRdatatype:
            raise ValueError("is not a DNS record type (A, AAAA, CNAME, MX, TXT, ...)") from None
        return value.upper()

    def display_name(self) -> str:
        return self.name or f"{self.query}@{self.server}"


async def run(cfg: DnsConfig, ctx: ProbeContext) -> ProbeResult:
    # imported on first use: dnspython's query machinery costs ~8 MB a site without DNS targets saves
    import dns.asyncquery
    import dns.message
    import dns.rcode

    request = dns.message.make_query(cfg.query, cfg.record_type)
    query = dns.asyncquery.udp if cfg.transport == "udp" else dns.asyncquery.tcp
    start = time.perf_counter()
    try:
        response = await query(request, cfg.server, port=cfg.port, timeout=ctx.timeout,
                               source=ctx.binding.source_address)
    except dns.exception.Timeout:
        raise ProbeError(f"no answer from {cfg.server}:{cfg.port}") from None
    except (OSError, dns.exception.DNSException) as exc:
        raise ProbeError(f"query to {cfg.server}:{cfg.port} failed: {exc}") from None
    elapsed = time.perf_counter() - start
    answers = sorted({rd.to_text().rstrip(".") for rrset in response.answer for rd in rrset})
    samples = (sample("dns_lookup_seconds", elapsed), sample("dns_answers", len(answers)))
    rcode = dns.rcode.to_text(response.rcode())
    info = {"rcode": rcode, "answers": " ".join(answers)}
    if response.rcode() != dns.rcode.NOERROR:
        return ProbeResult(ok=False, samples=samples, reason=f"server answered {rcode}", info=info)
    expected = {e.rstrip(".") for e in cfg.expect}
    if expected and not expected & set(answers):
        got = ", ".join(answers) or "nothing"
        return ProbeResult(ok=False, samples=samples, info=info,
                           reason=f"expected one of {', '.join(sorted(expected))}, got {got}")
    return ProbeResult(ok=True, samples=samples, info=info)


SPEC = ProbeSpec(
    kind="dns",
    config=DnsConfig,
    run=run,
    summary="DNS resolve time and expected answer",
    metrics=(
        MetricDoc("dns_lookup_seconds", "Time for the server to answer the query."),
        MetricDoc("dns_answers", "Records in the answer section."),
    ),
)
