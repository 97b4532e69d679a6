"""GET /api/v1/history: completed communes per day toward the deadline (the burn-up chart)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from commune_collector.access.deps import ACCESS_RESPONSES, ViewerDep, require_province
from commune_collector.api.routes.verdicts import NOT_READY, SLUG, judge_of
from commune_collector.judge.documents import HistoryDoc
from commune_collector.problems import Problem, ProblemDetail

router = APIRouter(prefix="/api/v1", tags=["verdicts"], responses=ACCESS_RESPONSES)


@router.get("/history", response_model=HistoryDoc, responses={404: {"model": ProblemDetail}, **NOT_READY})
async def get_history(request: Request, viewer: ViewerDep,
                      province: Annotated[str | None, Query(pattern=SLUG, description="province slug")] = None,
                      days: Annotated[int, Query(ge=1, le=366)] = 35) -> dict:
    """One point per day: completed, not completed, unknown; provinces done per item; the deadline."""
    judge = judge_of(request)
    if province is not None:
        require_province(viewer, province, f"no province {province!r}")
    if province is not None and province not in judge.province_names and (
            judge.snapshot is None or judge.snapshot.rollup.province(province) is None):
        raise Problem(404, "Not Found", f"no province {province!r}")
    return await run_in_threadpool(judge.history, province, days)
