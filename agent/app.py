"""The running agent: config in, scheduler, /metrics and result sinks wired together.

``main.py``-style wiring only (blackbox_exporter keeps main thin the same way):
every piece is built here, at start, never at import.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, start_http_server

from commune_agent.checks import Check, build_checks
from commune_agent.config import AgentConfig
from commune_agent.exposition import AgentCollector, LatestResults
from commune_agent.probes.base import ProbeResult
from commune_agent.scheduler import Scheduler
from commune_common.heap import freeze_heap

log = logging.getLogger("commune_agent")
Sink = Callable[[Check, ProbeResult], None]


@dataclass
class Agent:
    config: AgentConfig
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    resources: dict = field(default_factory=dict)
    sinks: list[Sink] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.checks = build_checks(self.config)
        self.latest = LatestResults(self.config.site.id)
        self.scheduler = Scheduler(self.checks, self._on_result, concurrency=self.config.agent.concurrency,
                                   jitter=self.config.agent.jitter, resources=self.resources)
        self.exposition = AgentCollector(self.latest, self.scheduler.stats, configured=len(self.checks))
        self.registry.register(self.exposition)

    def _on_result(self, check: Check, result: ProbeResult) -> None:
        self.latest.record(check, result)
        if not result.ok:
            log.info("check %s failed: %s", check.id, result.reason)
        for sink in self.sinks:
            sink(check, result)

    def apply_config(self, config: AgentConfig) -> tuple[int, int, int]:
        """Switch to ``config`` without a restart (central config): the scheduler keeps every unchanged check
        running in its phase; results of removed checks leave /metrics. (kept, stopped, started)."""
        checks = build_checks(config)
        self.config = config
        self.checks = checks
        counts = self.scheduler.replace_checks(checks)
        ids = {c.id for c in checks}
        for gone in [cid for cid in self.latest.results if cid not in ids]:
            self.latest.results.pop(gone, None)
        self.exposition.configured = len(checks)
        return counts

    async def probe_once(self) -> list[tuple[Check, ProbeResult]]:
        freeze_heap()  # a full collection amid 500 rounds ending together would walk it all
        try:
            return await self.scheduler.run_all_once()
        finally:
            self.close()

    def close(self) -> None:
        for resource in self.resources.values():
            close = getattr(resource, "close", None)
            if callable(close):
                close()

    def serve_metrics(self) -> None:
        host, port = self.config.agent.listen_address()
        start_http_server(port, addr=host, registry=self.registry)
        log.info("serving /metrics on http://%s:%d/metrics", host if ":" not in host else f"[{host}]", port)

    async def run(self, stop: asyncio.Event | None = None, extra_tasks: list | None = None) -> None:
        """Probe until SIGTERM/SIGINT (or ``stop``), then shut down cleanly."""
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):
                pass
        log.info("site %s: %d checks", self.config.site.id, len(self.checks))
        freeze_heap()
        tasks = [asyncio.create_task(t(stop)) for t in (extra_tasks or [])]
        try:
            await self.scheduler.run(stop)
        finally:
            await asyncio.gather(*tasks, return_exceptions=True)
            self.close()
            log.info("stopped")
