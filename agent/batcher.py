"""Collect probe results in memory between two spool writes.

The scheduler hands over results one by one; writing each to disk with an
fsync would cost 50 fsyncs per interval on an SD card. So results wait here
for at most one ``push_interval`` and are then written to the spool in one
transaction. That in-memory wait is the only window a ``kill -9`` can lose
(SIGTERM flushes it), and it is bounded in size too, so a spool that cannot
be written (disk full) never turns into unbounded memory.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

from commune_agent.checks import Check
from commune_agent.probes.base import ProbeResult
from commune_common.wire import CheckResult

DropHook = Callable[[int], None]
MAX_REASON = 1000  # the collector refuses a report with a reason over 1024 characters (422)


def to_check_result(check: Check, result: ProbeResult) -> CheckResult:
    """The wire form of one round.

    Non-finite values are left out: JSON has no NaN (msgspec writes ``null``,
    which no float field accepts), and a NaN says nothing the collector could
    judge; the round's ``ok`` and ``reason`` still say what happened. A very
    long reason is cut: one result the collector refuses would cost the whole
    report.
    """
    values = {s.key: s.value for s in result.samples if math.isfinite(s.value)}
    reason = result.reason if len(result.reason) <= MAX_REASON else result.reason[:MAX_REASON - 1] + "…"
    return CheckResult(check=check.id, probe=check.probe, ts=result.ts, ok=result.ok,
                       duration_s=result.duration_s, reason=reason,
                       labels=dict(check.labels), values=values)


class Batch:
    """Results not yet spooled, oldest first, bounded by ``max_results``.

    Beyond the bound the oldest results are dropped and reported to
    ``on_drop`` (the newest say most about the site now).
    """

    def __init__(self, max_results: int, on_drop: DropHook | None = None):
        self.max_results = max_results
        self.on_drop = on_drop
        self._items: deque[CheckResult] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item: CheckResult) -> None:
        self._items.append(item)
        overflow = len(self._items) - self.max_results
        if overflow > 0:
            for _ in range(overflow):
                self._items.popleft()
            if self.on_drop:
                self.on_drop(overflow)

    def take(self) -> list[CheckResult]:
        """Everything waiting, emptying the batch."""
        items = list(self._items)
        self._items.clear()
        return items

    def put_back(self, items: list[CheckResult]) -> None:
        """Return results a failed spool write did not keep, ahead of newer ones."""
        newer = list(self._items)
        self._items.clear()
        for item in [*items, *newer]:
            self.add(item)
