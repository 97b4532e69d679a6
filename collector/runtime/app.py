"""The collector's FastAPI application: built by ``create_app``, never at import.

Wiring only (the template's main.py habit): settings in, store opened and
migrated in the lifespan, routes from ``api.routes.ROUTERS``, background tasks
from ``BACKGROUND``, both lists a feature extends with one line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.requests import Request
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, Histogram
from starlette.requests import ClientDisconnect

from commune_collector import __version__, problems
from commune_collector.access.gate import AccessGate, refusal_counter
from commune_collector.access.tokens import OperatorVerifier
from commune_collector.aggregator import Aggregator
from commune_collector.alerting import run_alerting
from commune_collector.api import arrival
from commune_collector.api.openapi import conform
from commune_collector.api.routes import COMPONENTS, ROUTERS
from commune_collector.auth import TokenVerifier
from commune_collector.fleet.rollout_task import run_rollouts
from commune_collector.fleet.service import run_fleet
from commune_collector.host_metrics import host_metrics
from commune_collector.httpguard import SERVER_STATS
from commune_collector.maintenance.silences import run_silences
from commune_collector.metrics import AggregatorStats, CollectorMetrics, request_histogram
from commune_collector.provinces import provinces
from commune_collector.remote_write import RemoteWriter
from commune_collector.runtime.aggregator_process import run_in_child_process
from commune_collector.runtime.judge_service import build_judge_for_server, run_judge
from commune_collector.runtime.state import CollectorState
from commune_collector.settings import CollectorSettings
from commune_collector.store import Store, StoreUnavailable, open_store
from commune_collector.web.install import install as install_status_page
from commune_common.heap import settle_heap

log = logging.getLogger("commune_collector")


async def _run_aggregator(state: CollectorState) -> None:
    if state.aggregate_in_child:
        assert state.aggregator is not None  # made in _build_state, its stats in shared memory for the child
        await run_in_child_process(state.settings, state.stop, state.aggregator.stats)
    elif state.aggregator is not None:
        await state.aggregator.run(state.stop)


async def _run_remote_writer(state: CollectorState) -> None:
    if state.remote_writer is not None:
        await state.remote_writer.run(state.stop)


# long-running tasks started with the app and stopped with it; a feature adds one line
# run_alerting before run_judge: its listener must be registered before the judge's first pass
BACKGROUND: list[Callable[[CollectorState], Awaitable[None]]] = [_run_aggregator, _run_remote_writer, run_alerting,
                                                              run_judge]
BACKGROUND.append(run_fleet)  # fleet management: enrollment, served configs, agents' config state
BACKGROUND.append(run_rollouts)  # staged rollouts of the agent profile: follow, count, halt by itself
BACKGROUND.append(run_silences)  # maintenance windows mirrored as Alertmanager silences


class LatencyMiddleware:
    """Observes every request's duration under its route template (pure ASGI: cheap)."""

    def __init__(self, app: Callable, histogram: Histogram):
        self.app = app
        self.histogram = histogram

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        arrival.stamp(scope)  # servers that do not stamp the kernel's arrival time (api/arrival.py)
        try:
            await self.app(scope, receive, send)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.histogram.labels(route, scope.get("method", "")).observe(time.perf_counter() - started)


def create_app(settings: CollectorSettings, store: Store | None = None,
               registry: CollectorRegistry | None = None, *, settle: bool = False) -> FastAPI:
    """The ASGI app; ``store`` and ``registry`` may be injected (tests), else built from settings.

    ``settle``: once started, tune the process's garbage collection for a long life (``serve`` does;
    tests running many apps in one process do not).
    """
    registry = registry if registry is not None else CollectorRegistry()
    latency = request_histogram(registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own_store = store is None
        active = store if store is not None else open_store(settings)
        tasks: list[asyncio.Task[None]] = []
        collector: CollectorMetrics | None = None
        try:
            await asyncio.to_thread(active.migrate)
            state = _build_state(settings, active, registry, own_store)
            collector = CollectorMetrics(active, state.ingest_stats, state.aggregator.stats if state.aggregator
                                         else AggregatorStats(),
                                         extra=[SERVER_STATS.families,
                                                *([state.remote_writer.metrics] if state.remote_writer else []),
                                                host_metrics(settings, active)])
            registry.register(collector)
            app.state.collector = state
            tasks = [asyncio.create_task(run(state), name=run.__name__) for run in BACKGROUND]
            if settle:
                settle_heap()
            log.info("collector %s ready (%s store)", __version__, active.dialect)
            yield
            state.stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            for task in tasks:
                task.cancel()
            if collector is not None:
                registry.unregister(collector)
            if own_store:
                await asyncio.to_thread(active.close)

    app = FastAPI(title="commune-collector", version=__version__, lifespan=lifespan,
                  description="Ingest of commune-agent reports, site inventory and latest evidence.")
    problems.install(app)
    app.add_exception_handler(StoreUnavailable, _store_unavailable)
    app.add_exception_handler(ClientDisconnect, _client_disconnected)
    for router in ROUTERS:
        app.include_router(router)
    install_status_page(app)  # the status page at /, /p/{slug}, /s/{site}; static files; gzip
    app.add_middleware(AccessGate, refused=refusal_counter(registry))  # every route but health, ingest, static (and /public) needs an operator
    app.add_middleware(LatencyMiddleware, histogram=latency)
    _merge_components(app, COMPONENTS, settings)
    return app


async def _store_unavailable(request: object, exc: Exception) -> Response:
    """Any route that cannot reach the database answers 503: the client should retry, nothing was half-done."""
    log.warning("store unavailable: %s", exc)
    return problems.problem_response(problems.Problem(503, "Store unavailable", "the database cannot be reached; retry",
                                                      headers={"Retry-After": "5"}))


async def _client_disconnected(request: Request, exc: Exception) -> Response:
    """A client gone before its body arrived is normal on a bad link: one line and a counter, no traceback."""
    SERVER_STATS.client_disconnects += 1
    client = f"{request.client.host}:{request.client.port}" if request.client else "a client"
    log.info("%s went away before its request body arrived (%s %s); nothing stored", client, request.method,
             request.url.path)
    return Response(status_code=400)  # nobody reads it: the connection is gone


def _merge_components(app: FastAPI, components: dict[str, dict], settings: CollectorSettings) -> None:
    """Add schemas that routes reference by hand to the generated OpenAPI document, and make it agree with
    what the API answers (problem+json errors, the provinces and items that exist: ``api.openapi``)."""
    generate = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = generate()
            schema.setdefault("components", {}).setdefault("schemas", {}).update(components)
            items = list(settings.judge.criteria().items) if settings.judge.enabled else None
            app.openapi_schema = conform(schema, sorted(provinces()), items)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _build_state(settings: CollectorSettings, store: Store, registry: CollectorRegistry,
                 own_store: bool) -> CollectorState:
    """The app's state; with an injected store (tests) the aggregator and the judge stay in this process."""
    writer = RemoteWriter(settings.remote_write) if settings.remote_write.url else None
    return CollectorState(settings=settings, store=store, registry=registry,
                          verifier=TokenVerifier(store, settings.auth.cache_ttl),
                          operators=OperatorVerifier(store, settings.auth.cache_ttl),
                          # in shared memory: with aggregate_in_child the child counts into these very stats
                          aggregator=Aggregator(store, settings.aggregator, settings.retention,
                                                AggregatorStats.shared()),
                          aggregate_in_child=own_store and settings.aggregator.process, remote_writer=writer,
                          judge=build_judge_for_server(settings, store, own_store and settings.judge.process))
