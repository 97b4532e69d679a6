"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from commune_collector.api.deps import StoreDep
from commune_collector.api.schemas import Health
from commune_collector.problems import Problem, ProblemDetail

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is up and serving."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": ProblemDetail}})
async def readyz(store: StoreDep) -> Health:
    """The store answers and every migration is applied."""
    problem = await run_in_threadpool(store.check_ready)
    if problem:
        raise Problem(503, "Not ready", problem, headers={"Retry-After": "5"})
    return Health(status="ready")
