"""Run every check on its own interval, forever, without letting one slow the rest.

Each check gets its own task and a fixed phase drawn at start, so 500 checks
with the same interval spread over it instead of firing together; each round
gets a little jitter around its slot, never drift. A round never overlaps the
previous round of the same check: a round that overruns skips the slots it
missed (counted). A semaphore bounds how many rounds run at once; the runner's
timeout bounds how long a hung target can hold a slot.

The bound is there for what a round holds: a socket (a file descriptor) of its
own, for TCP, HTTP, DNS or SNMP. A kind whose rounds all share one engine socket
(``ProbeSpec.needs_slot=False``: icmp) holds none, so it takes no slot: 500 ICMP
targets all start together, as fping's do, rather than in waves of
``agent.concurrency``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from commune_agent.checks import Check
from commune_agent.probes.base import ProbeContext, ProbeResult
from commune_agent.runner import run_check

log = logging.getLogger(__name__)
ResultHandler = Callable[[Check, ProbeResult], None]


@dataclass
class SchedulerStats:
    rounds: dict[tuple[str, bool], int] = field(default_factory=dict)  # (check id, ok) -> count
    skipped: dict[str, int] = field(default_factory=dict)
    lag_sum: float = 0.0
    lag_count: int = 0
    lag_max: float = 0.0

    def record_lag(self, lag: float) -> None:
        self.lag_sum += lag
        self.lag_count += 1
        self.lag_max = max(self.lag_max, lag)


class Scheduler:
    def __init__(self, checks: list[Check], on_result: ResultHandler, *, concurrency: int = 256,
                 jitter: float = 0.1, resources: dict | None = None, rng: random.Random | None = None):
        self.checks = checks
        self.on_result = on_result
        self.jitter = jitter
        self.resources = resources if resources is not None else {}
        self.stats = SchedulerStats()
        self._slots = asyncio.Semaphore(concurrency)
        self._rng = rng or random.Random()
        self._contexts: dict[str, ProbeContext] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}  # check id -> its loop, while run() runs
        self._stop: asyncio.Event | None = None

    def context(self, check: Check) -> ProbeContext:
        """The check's context, made once: its ``state`` carries over from round to round."""
        ctx = self._contexts.get(check.id)
        if ctx is None:
            ctx = ProbeContext(binding=check.binding, timeout=check.timeout, resources=self.resources)
            self._contexts[check.id] = ctx
        return ctx

    async def run_once(self, check: Check, due: float | None = None) -> ProbeResult:
        """One round now (it was due at loop time ``due``), bounded by the concurrency limit (if its kind
        needs a slot)."""
        ctx = self.context(check)
        ctx.due = due
        if check.spec.needs_slot:
            async with self._slots:
                result = await run_check(check, ctx)
        else:
            result = await run_check(check, ctx)
        key = (check.id, result.ok)
        self.stats.rounds[key] = self.stats.rounds.get(key, 0) + 1
        self.on_result(check, result)
        return result

    async def _loop(self, check: Check, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time() + self._rng.uniform(0, check.interval)
        while not stop.is_set():
            slot = due + self._rng.uniform(-self.jitter, self.jitter) * check.interval
            await asyncio.sleep(max(0.0, slot - loop.time()))  # run() cancels this task at stop
            self.stats.record_lag(max(0.0, loop.time() - slot))
            await self.run_once(check, slot)
            due += check.interval
            now = loop.time()
            if now > due:  # the round overran its next slot: skip, never overlap
                missed = int((now - due) // check.interval) + 1
                self.stats.skipped[check.id] = self.stats.skipped.get(check.id, 0) + missed
                due += missed * check.interval

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; in-flight rounds are cancelled at shutdown."""
        self._stop = stop
        self._tasks = {c.id: asyncio.create_task(self._loop(c, stop), name=f"check:{c.id}") for c in self.checks}
        try:
            await stop.wait()
        finally:
            tasks = list(self._tasks.values())
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def replace_checks(self, checks: list[Check]) -> tuple[int, int, int]:
        """Run ``checks`` from now on: an unchanged check keeps its loop (its phase and its state), a changed
        or removed one is stopped, a new or changed one starts with a fresh phase. (kept, stopped, started)."""
        old = {c.id: c for c in self.checks}
        new = {c.id: c for c in checks}
        stopped = [cid for cid, c in old.items() if new.get(cid) != c]
        started = [c for cid, c in new.items() if old.get(cid) != c]
        self.checks = list(checks)
        for cid in stopped:
            self._contexts.pop(cid, None)
            task = self._tasks.pop(cid, None)
            if task is not None:
                task.cancel()
        if self._stop is not None:
            for check in started:
                self._tasks[check.id] = asyncio.create_task(self._loop(check, self._stop), name=f"check:{check.id}")
        return len(new) - len(started), len(stopped), len(started)

    async def run_all_once(self) -> list[tuple[Check, ProbeResult]]:
        """Every check once, concurrently (probe-once).

        A task per check, counted down to one future rather than gathered: ``gather`` adds a
        Python callback and a loop turn per task, which 500 icmp rounds ending together wait for.
        The first exception out of a round (only a bug, or a cancellation from inside such as an
        engine closed under its rounds) is raised here, as from ``gather``, and the rounds still
        running are cancelled.
        """
        loop = asyncio.get_running_loop()
        now = loop.time()
        results: dict[int, ProbeResult] = {}
        all_done: asyncio.Future[None] = loop.create_future()

        async def one(index: int, check: Check) -> None:
            try:
                results[index] = await self.run_once(check, now)
            except BaseException as exc:  # handed on to run_all_once, not swallowed
                if not all_done.done():
                    all_done.set_exception(exc)
                return
            if len(results) == len(self.checks):
                all_done.set_result(None)

        if not self.checks:
            return []
        tasks = [loop.create_task(one(i, c)) for i, c in enumerate(self.checks)]
        try:
            await all_done
        finally:
            for task in tasks:
                task.cancel()  # a no-op for the finished ones
        return [(check, results[i]) for i, check in enumerate(self.checks)]
