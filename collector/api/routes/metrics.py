"""The collector's own Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from commune_collector.access.deps import ACCESS_RESPONSES
from commune_collector.api.deps import StateDep

router = APIRouter(tags=["metrics"], responses=ACCESS_RESPONSES)


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text exposition"}})
async def metrics(state: StateDep) -> Response:
    """Ingest rate, rejects, latency, per-site last report and clock offset, journal backlog."""
    body = await run_in_threadpool(generate_latest, state.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
