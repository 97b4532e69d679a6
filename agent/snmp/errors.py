"""SNMP failures, each with the ``kind`` that ``commune_snmp_errors_total`` counts it under.

A probe raises one of these; ``counting_errors`` turns it into a failed round
that still carries the error counters, so a device that times out, answers
with the wrong type or floods us with rows shows up as a metric, not only as
a reason string.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec

from commune_agent.probes.base import (
    MetricDoc,
    ProbeContext,
    ProbeError,
    ProbeResult,
    Sample,
    sample,
)


class SnmpError(ProbeError):
    """Any SNMP failure; the message is the reason users see (never a secret)."""

    kind = "error"


class SnmpTimeout(SnmpError):
    kind = "timeout"


class SnmpAuthError(SnmpError):
    kind = "auth"


class SnmpCredentialError(SnmpError):
    """A credential file or environment variable named in the config cannot be read."""

    kind = "credentials"


class SnmpTypeError(SnmpError):
    """The device answered an OID with a type the probe cannot use."""

    kind = "wrong_type"

    def __init__(self, oid: str, expected: str, value: Any):
        super().__init__(f"{oid}: expected {expected}, the device answered {type(value).__name__}")


class SnmpTooManyRows(SnmpError):
    kind = "too_many_rows"


class SnmpRebooted(SnmpError):
    """sysUpTime went backwards between the start and the end of one walk."""

    kind = "rebooted_mid_walk"


class SnmpStatusError(SnmpError):
    """The device answered with an SNMP error-status (noSuchName, genErr, ...)."""

    kind = "error_status"


class SnmpMissing(SnmpError):
    """An OID the probe needs is not on the device (noSuchObject/noSuchInstance)."""

    kind = "missing"


class SnmpProtocolError(SnmpError):
    """A reply that breaks the protocol: OIDs not increasing, a walk that makes no progress."""

    kind = "protocol"


ERROR_KINDS: tuple[str, ...] = tuple(cls.kind for cls in (
    SnmpTimeout, SnmpAuthError, SnmpCredentialError, SnmpTypeError, SnmpTooManyRows, SnmpRebooted,
    SnmpStatusError, SnmpMissing, SnmpProtocolError, SnmpError))

ERRORS_METRIC = MetricDoc("snmp_errors_total", "SNMP rounds of this check that failed, by error kind "
                          "(timeout, auth, credentials, wrong_type, too_many_rows, rebooted_mid_walk, "
                          "error_status, missing, protocol, error).", ("error",), "counter")

C = TypeVar("C")
Run = Callable[[C, ProbeContext], Awaitable[ProbeResult]]
_DEADLINE_SHARE = 0.95  # leave the runner's own timeout a margin, so our count sees the timeout first


def _error_samples(counts: dict[str, int]) -> tuple[Sample, ...]:
    return tuple(sample("snmp_errors_total", n, error=kind) for kind, n in counts.items())


def counting_errors(run: Run[C]) -> Run[C]:
    """Wrap an SNMP probe so every failure is counted by kind and the counters ride on each result."""

    async def wrapped(cfg: C, ctx: ProbeContext) -> ProbeResult:
        counts: dict[str, int] = ctx.state.setdefault("snmp_errors", dict.fromkeys(ERROR_KINDS, 0))
        try:
            async with asyncio.timeout(ctx.timeout * _DEADLINE_SHARE):
                result = await run(cfg, ctx)
        except TimeoutError:
            counts["timeout"] += 1
            return ProbeResult(ok=False, reason=f"SNMP round did not finish within {ctx.timeout * _DEADLINE_SHARE:.3g}s",
                               samples=_error_samples(counts))
        except SnmpError as exc:
            counts[exc.kind] += 1
            return ProbeResult(ok=False, reason=str(exc), samples=_error_samples(counts))
        if not result.ok:  # a partial answer: the probe names the kind in info["snmp_error"]
            kind = result.info.get("snmp_error", "error")
            counts[kind if kind in counts else "error"] += 1
        return msgspec.structs.replace(result, samples=result.samples + _error_samples(counts))

    wrapped.__doc__ = run.__doc__
    wrapped.__name__ = getattr(run, "__name__", "run")
    return wrapped
