"""Run one round of one check: the runner owns timeout, duration and failure reasons.

Probes raise on failure; here every exception becomes a failed result with a
reason a person can act on, and the round is bounded by the check's timeout.
"""

from __future__ import annotations

import asyncio
import logging
import time

from commune_agent.checks import Check
from commune_agent.probes.base import ProbeContext, ProbeError, ProbeResult

log = logging.getLogger(__name__)


async def run_check(check: Check, ctx: ProbeContext) -> ProbeResult:
    """One round, never raising: a failure comes back as ``ok=False`` with its reason."""
    ts = ctx.clock()
    start = time.perf_counter()
    try:
        if check.spec.self_timed:
            result = await check.spec.run(check.config, ctx)
        else:
            async with asyncio.timeout(check.timeout):
                result = await check.spec.run(check.config, ctx)
    except TimeoutError:
        result = ProbeResult(ok=False, reason=f"timed out after {check.timeout:g}s")
    except ProbeError as exc:
        result = ProbeResult(ok=False, reason=str(exc))
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a bug or an unforeseen reply: one check fails, the agent goes on
        log.warning("check %s raised %s", check.id, exc, exc_info=log.isEnabledFor(logging.DEBUG))
        result = ProbeResult(ok=False, reason=f"{type(exc).__name__}: {exc}")
    duration = time.perf_counter() - start
    return result.timed(duration, ts)
