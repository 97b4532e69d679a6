"""HTTP(S): status, total time, optional body match, days left on the TLS certificate.

A fresh connection every round, like blackbox_exporter, so the time includes
the handshake a citizen's browser would pay.
"""

from __future__ import annotations

import re
import socket
import ssl
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from pydantic import Field, HttpUrl, field_validator

from commune_agent.probes.base import (
    MetricDoc,
    ProbeContext,
    ProbeError,
    ProbeResult,
    ProbeSpec,
    TargetConfig,
    sample,
)

if TYPE_CHECKING:
    import httpx

MAX_BODY_BYTES = 1 << 20
# httpx and cryptography are imported when a round runs, not at import: together they are
# about a third of the agent's memory, and a site without HTTP targets need not pay for them


class HttpConfig(TargetConfig):
    probe: Literal["http"]
    url: HttpUrl
    method: Literal["GET", "HEAD", "POST"] = "GET"
    expect_status: list[int] = Field(default_factory=lambda: [200], description="acceptable status codes")
    body_regex: str | None = Field(default=None, description="the body must match this regular expression")
    verify_tls: bool = True
    ca_file: str | None = None
    follow_redirects: bool = True
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("body_regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"is not a valid regular expression ({exc})") from None
        return value

    def display_name(self) -> str:
        return self.name or str(self.url)


def _transport(cfg: HttpConfig, ctx: ProbeContext) -> httpx.AsyncHTTPTransport:
    import httpx

    verify: ssl.SSLContext | bool = False
    if cfg.verify_tls:
        verify = ssl.create_default_context(cafile=cfg.ca_file) if cfg.ca_file else True
    options = []
    if ctx.binding.interface:
        options.append((socket.SOL_SOCKET, getattr(socket, "SO_BINDTODEVICE", 25), ctx.binding.interface.encode()))
    return httpx.AsyncHTTPTransport(verify=verify, local_address=ctx.binding.source_address,
                                    socket_options=options or None, retries=0)


def _cert_expiry(response: httpx.Response) -> datetime | None:
    from cryptography import x509

    stream = response.extensions.get("network_stream")
    ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    return x509.load_der_x509_certificate(der).not_valid_after_utc if der else None


async def run(cfg: HttpConfig, ctx: ProbeContext) -> ProbeResult:
    import httpx

    url = str(cfg.url)
    start = time.perf_counter()
    try:
        async with httpx.AsyncClient(transport=_transport(cfg, ctx), timeout=ctx.timeout,
                                     follow_redirects=cfg.follow_redirects, headers=cfg.headers) as client:
            async with client.stream(cfg.method, url) as response:
                expiry = _cert_expiry(response)
                body = b""
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) >= MAX_BODY_BYTES:
                        break
    except httpx.HTTPError as exc:
        raise ProbeError(f"{cfg.method} {url} failed: {_describe(exc)}") from None
    elapsed = time.perf_counter() - start
    samples = [sample("http_status_code", response.status_code), sample("http_duration_seconds", elapsed),
               sample("http_content_length_bytes", len(body))]
    info = {"status": str(response.status_code), "http_version": response.http_version}
    if expiry is not None:
        left = (expiry - datetime.now(UTC)).total_seconds()
        samples.append(sample("http_tls_cert_expiry_seconds", left))
        info["cert_days_left"] = f"{left / 86400:.1f}"
    reason = ""
    if response.status_code not in cfg.expect_status:
        reason = f"status {response.status_code}, expected {', '.join(map(str, cfg.expect_status))}"
    elif cfg.body_regex and not re.search(cfg.body_regex, body.decode("utf-8", "replace")):
        reason = f"body does not match {cfg.body_regex!r}"
    return ProbeResult(ok=not reason, samples=tuple(samples), reason=reason, info=info)


def _describe(exc: httpx.HTTPError) -> str:
    cause: BaseException | None = exc
    while cause is not None:  # httpx wraps httpcore, which wraps the ssl error: look down the chain
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"TLS certificate not trusted: {cause.verify_message}"
        cause = cause.__cause__ or cause.__context__
    return str(exc) or type(exc).__name__


SPEC = ProbeSpec(
    kind="http",
    config=HttpConfig,
    run=run,
    summary="HTTP status, total time, body match, TLS certificate expiry",
    metrics=(
        MetricDoc("http_status_code", "Status code of the last response."),
        MetricDoc("http_duration_seconds", "Total time of the request, connection and TLS handshake included."),
        MetricDoc("http_content_length_bytes", "Bytes of body read (capped at 1 MiB)."),
        MetricDoc("http_tls_cert_expiry_seconds", "Seconds until the server's TLS certificate expires."),
    ),
)
