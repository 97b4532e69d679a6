"""The aggregator in a process of its own (the server's child, or ``commune-collector aggregate``).

Folding is CPU-bound Python: in the server's process it would share one GIL
with ingest; in its own process it gets the second core of a 2-core machine.
Several folders may run at once (see ``commune_collector.aggregator``), so the
child simply opens the same database.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from commune_collector.aggregator import Aggregator
from commune_collector.metrics import AggregatorStats
from commune_collector.runtime.childproc import CONTEXT, child_setup, stop_on_signals, supervise
from commune_collector.settings import CollectorSettings
from commune_collector.store import open_store

log = logging.getLogger("commune_collector.aggregator")
AGGREGATOR_PROCESS_NAME = "commune-aggr"  # ps/top: 15 characters at most


# -- in a process of its own -------------------------------------------------------------------


def run_until_stopped(settings: CollectorSettings, stop: threading.Event | None = None,
                      stats: AggregatorStats | None = None) -> None:
    """Pass every ``aggregator.interval`` until SIGTERM/SIGINT (or ``stop``), then a last pass."""
    if stop is None:  # run alone (commune-collector aggregate); the server's child gets it from child_setup
        stop = stop_on_signals()
    store = open_store(settings)
    try:
        aggregator = Aggregator(store, settings.aggregator, settings.retention, stats)
        while True:
            stopping = stop.wait(settings.aggregator.interval)
            try:
                aggregator.run_pass()
            except Exception:  # noqa: BLE001 - the next pass retries; the journal keeps everything
                aggregator.stats.errors += 1
                log.exception("aggregator pass failed")
            if stopping:
                break
    finally:
        store.close()


def _child_main(settings: CollectorSettings, stats: AggregatorStats) -> None:
    """Entry point of the server's aggregator process."""
    run_until_stopped(settings, child_setup(AGGREGATOR_PROCESS_NAME, settings.log_level), stats)


async def run_in_child_process(settings: CollectorSettings, stop: asyncio.Event, stats: AggregatorStats) -> None:
    """Keep an aggregator process running until ``stop`` (``childproc.supervise``); it counts into ``stats``,
    shared memory the server's /metrics reads (a restarted child goes on counting in the same block)."""
    await supervise("aggregator", lambda: CONTEXT.Process(target=_child_main, args=(settings, stats),
                                                         name="commune-collector-aggregator"), stop)
