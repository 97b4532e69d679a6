"""What the running agent tells the person reading its log (journalctl -u commune-agent).

An installer looks at the log once after starting the unit, an operator when
something is wrong. Both need a few lines that say what the agent does, not one
line per round: at start, the checks scheduled and whether push is on; then
the first report the collector acknowledged; then one summary line per period
(reports sent, backlog, oldest unsent); and spool drops once per change, with
counts. Push failures and recoveries are logged by the pusher itself, once per
change of state.

The narrator only reads the pusher's counters (``PushStats``, the spool's
stats and drop counts), so it adds no state to the push path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from commune_agent.checks import Check
from commune_agent.config import AgentConfig

log = logging.getLogger("commune_agent")

SUMMARY_EVERY_S = 600.0


def _seconds(value: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if value >= size:
            return f"{value / size:.3g}{unit}"
    return f"{value:.3g}s"


def start_lines(cfg: AgentConfig, checks: Sequence[Check], push: str) -> list[str]:
    """The lines logged at start: site, checks by probe and interval, and the push state.

    ``push`` is "on", "off-config" (no collector: section) or "off-flag" (--no-push).
    """
    kinds = Counter(check.probe for check in checks)
    by_kind = ", ".join(f"{kind} {n}" for kind, n in sorted(kinds.items()))
    intervals = sorted({check.interval for check in checks})
    every = (f"every {_seconds(intervals[0])}" if len(intervals) == 1 else
             f"every {_seconds(intervals[0])} to {_seconds(intervals[-1])}") if intervals else ""
    lines = [f"site {cfg.site.id} ({cfg.site.commune}, {cfg.site.province}): {len(checks)} check{'s' if len(checks) != 1 else ''} scheduled "
             f"({by_kind}) {every}".rstrip()]
    if push == "on" and cfg.collector is not None:
        lines.append(f"push is on: reports go to {cfg.collector.url} every {_seconds(cfg.collector.push_interval)}")
    elif push == "off-flag":
        lines.append("push is OFF (--no-push): nothing is sent to the collector; results are only on /metrics")
    else:
        lines.append("push is OFF: the config has no collector: section, so nothing is sent to the collector; "
                     "results are only on /metrics")
    return lines


class PushNarrator:
    """Watches a pusher's counters and logs the first ack, a periodic summary and spool drops."""

    def __init__(self, pusher: Any, *, summary_every: float = SUMMARY_EVERY_S, poll: float = 1.0,
                 clock: Callable[[], float] = time.time):
        self.pusher = pusher
        self.summary_every = summary_every
        self.poll = poll
        self.clock = clock
        self._said_first = False
        self._drops_said: dict[str, tuple[int, int]] = {}
        self._last_summary = clock()
        self._sent_at_summary = 0
        self._acked_at_summary = 0
        self._results_at_summary = 0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), self.poll)
            except TimeoutError:
                pass
            self.observe()

    def observe(self) -> None:
        """One look at the counters: log whatever changed that a person should know."""
        stats = self.pusher.stats
        if not self._said_first and stats.acked:
            self._said_first = True
            offset = f", clock offset {stats.clock_offset:+.1f}s" if stats.clock_offset is not None else ""
            log.info("first report acknowledged by the collector (%d results%s): the center hears this site",
                     stats.results_acked, offset)
        self._say_drops()
        if self.clock() - self._last_summary >= self.summary_every:
            log.info("%s", self.summary())

    def _say_drops(self) -> None:
        drops = dict(self.pusher.spool.drops.by_reason)
        if drops == self._drops_said:
            return
        parts = []
        for reason, (reports, results) in sorted(drops.items()):
            old_reports, old_results = self._drops_said.get(reason, (0, 0))
            if (reports, results) != (old_reports, old_results):
                parts.append(f"{reason}: {reports - old_reports} batches, {results - old_results} results "
                             f"(since start {reports} batches, {results} results)")
        self._drops_said = drops
        log.warning("spool dropped results that will never reach the collector: %s", "; ".join(parts))

    def summary(self) -> str:
        """One line: what went out since the last summary, what waits, since when."""
        stats, spool = self.pusher.stats, self.pusher.spool.stats
        now = self.clock()
        period = _seconds(now - self._last_summary)
        sent, acked = stats.sent - self._sent_at_summary, stats.acked - self._acked_at_summary
        results = stats.results_acked - self._results_at_summary
        self._last_summary, self._sent_at_summary = now, stats.sent
        self._acked_at_summary, self._results_at_summary = stats.acked, stats.results_acked
        oldest = (f"oldest unsent {_seconds(max(0.0, now - spool.oldest_created))} old"
                  if spool.oldest_created is not None else "nothing unsent")
        failing = f", retrying in {stats.backoff:.0f}s" if stats.backoff else ""
        return (f"push, last {period}: {acked} of {sent} reports acknowledged ({results} results); backlog "
                f"{spool.reports} batches, {spool.results} results, {oldest}{failing}")
