"""The agent-to-collector wire format: the one module both halves import.

A report is a batch of check results from one site. Each result is what one
probe round found: success, duration, the reason for a failure and the
measured values. Values are keyed by metric name in Prometheus notation
(``rtt_seconds{stat="avg"}``) so the collector can judge them and forward them
without a second schema.

Idempotency: ``(site, instance, seq)`` names a report uniquely. ``instance`` is
a random id the agent draws once and keeps in its state directory, so a
reinstalled agent restarting its sequence at 1 can never collide with what an
earlier install sent.
"""

from __future__ import annotations

import re
from typing import Annotated

import msgspec

WIRE_VERSION = 1
MAX_RESULTS_PER_REPORT = 5000
# bounds the collector enforces and the agent's config refuses up front, so no site is stuck sending 422s
MAX_CHECK_ID = 256
MAX_LABEL_VALUE = 256
MAX_REASON = 1024
# every integer on the wire fits both stores (SQLite INTEGER and PostgreSQL BIGINT: 2^63-1) with room for the
# store's seq+1; 2^53-1 is also the largest integer every JSON parser (JavaScript's Number) keeps exact
MAX_SEQ = 2**53 - 1
MAX_WIRE_VERSION = 2**31 - 1
Seq = Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ)]
_KEY = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*"(,[a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*")*\})?$')


class CheckResult(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One round of one check at a site."""

    check: str  # stable id unique within the site, e.g. "link/primary/icmp/dc-hanoi"
    probe: str  # probe kind: icmp, tcp, http, dns, host, snmp_system, ups_nut, ...
    ts: float  # unix seconds, agent clock, when the round started
    ok: bool
    duration_s: float
    reason: str = ""
    labels: dict[str, str] = {}  # link, role, target, device ... as configured
    values: dict[str, float] = {}


MAX_AGE_S = 10 * 365 * 86400.0  # bounds a spool age on the wire (a clock gone wild reads as ten years at most)


class SpoolState(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The agent's spool as it sent the report: what is still unsent and what it has had to drop.

    Sent only to a collector whose ``Ack.stores`` lists ``"spool"``, so a newer agent never sends
    a field an older collector would refuse; an older agent simply never sends it.
    """

    reports: Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ)]  # batches waiting for an ack, this one's included
    oldest_age_s: Annotated[float, msgspec.Meta(ge=0, le=MAX_AGE_S)] = 0.0  # the oldest waiting batch's age
    dropped_reports: Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ)] = 0  # since the agent started, any reason
    dropped_results: Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ)] = 0


class Report(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """A batch pushed by one agent.

    ``config_version`` / ``config_error``: a centrally managed agent's applied config version
    (content hash) and why the newest served config could not be applied; left out when empty,
    so a locally managed agent's reports are the bytes an older collector expects.
    """

    site: str
    instance: str
    seq: Seq
    sent_at: float  # agent clock at send time; the collector measures clock offset from it
    agent_version: str
    results: list[CheckResult]
    wire_version: Annotated[int, msgspec.Meta(ge=0, le=MAX_WIRE_VERSION)] = WIRE_VERSION
    config_version: str = ""
    config_error: str = ""
    spool: SpoolState | None = None  # the agent's backlog and drops (see SpoolState)


class Ack(msgspec.Struct, frozen=True):
    """The collector's answer: which sequence numbers are durable now."""

    accepted: Seq
    duplicate: bool = False
    clock_offset_s: float = 0.0
    stores: list[str] = []  # the optional report fields this collector keeps ("spool"); an agent sends only these


def value_key(name: str, labels: dict[str, str] | None = None) -> str:
    """``value_key('rtt_seconds', {'stat': 'avg'})`` -> ``'rtt_seconds{stat="avg"}'``."""
    if not labels:
        return name
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


def split_key(key: str) -> tuple[str, dict[str, str]]:
    """Inverse of value_key."""
    if "{" not in key:
        return key, {}
    name, _, rest = key.partition("{")
    labels: dict[str, str] = {}
    for match in re.finditer(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', rest[:-1]):
        labels[match.group(1)] = match.group(2).replace('\\"', '"').replace("\\\\", "\\")
    return name, labels


def valid_key(key: str) -> bool:
    """Whether a value key is well formed (validated at ingest)."""
    return bool(_KEY.match(key))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', "'").replace("\n", " ")


_encoder = msgspec.json.Encoder()
_report_decoder = msgspec.json.Decoder(Report)


def encode_report(report: Report) -> bytes:
    return _encoder.encode(report)


def decode_report(data: bytes) -> Report:
    """Decode and type-check; raises msgspec.ValidationError naming the field."""
    return _report_decoder.decode(data)
