"""GET /api/v1/verdicts and /api/v1/verdicts/{site}: each site's verdict, criterion by criterion."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request

from commune_collector.access.deps import ACCESS_RESPONSES, ViewerDep, list_scope, require_province
from commune_collector.api.deps import known_province
from commune_collector.judge.documents import (
    STATUS_HELP,
    SiteVerdict,
    State,
    Status,
    VerdictPage,
    verdict_page,
)
from commune_collector.judge.verdict import Snapshot
from commune_collector.l10n import pick_lang
from commune_collector.problems import Problem, ProblemDetail
from commune_collector.reasons import localize

router = APIRouter(prefix="/api/v1", tags=["verdicts"], responses=ACCESS_RESPONSES)
SLUG = r"^[a-z0-9][a-z0-9-]{0,62}$"
NOT_READY = {503: {"model": ProblemDetail, "description": "no judge, or its first pass has not finished"}}


def judge_of(request: Request) -> Any:
    judge = getattr(getattr(request.app.state, "collector", None), "judge", None)
    if judge is None:
        raise Problem(503, "Service Unavailable", "this collector runs no judge (judge.enabled is false)")
    return judge


def current_snapshot(request: Request) -> Snapshot:
    """The judge's latest snapshot; 503 with Retry-After before its first pass."""
    judge = judge_of(request)
    snapshot = judge.snapshot
    if snapshot is None:
        raise Problem(503, "Service Unavailable", getattr(judge, "standby", None)
                      or "the judge has not finished its first pass yet", headers={"Retry-After": "30"})
    return snapshot


SnapshotDep = Annotated[Snapshot, Depends(current_snapshot)]


def reason_lang(request: Request, lang: Annotated[str | None, Query(
        pattern="^(vi|en)$", description="language of the rendered reasons; default: Accept-Language, "
                                          "else English")] = None) -> str:
    """The language ``reason`` fields are rendered in: ``lang=``, else Accept-Language, else English."""
    return lang or pick_lang(request.headers.get("accept-language"), default="en")


ReasonLang = Annotated[str, Depends(reason_lang)]


@router.get("/verdicts", response_model=VerdictPage, responses={422: {"model": ProblemDetail}, **NOT_READY})
def list_verdicts(snapshot: SnapshotDep, viewer: ViewerDep, lang: ReasonLang,
                  province: Annotated[str | None, Query(pattern=SLUG, description="province slug")] = None,
                  state: Annotated[State | None, Query(description="the site's state, or the item's with item=")] = None,
                  item: Annotated[str | None, Query(pattern=SLUG, description="filter state= on this item")] = None,
                  status: Annotated[Status | None, Query(description=STATUS_HELP)] = None,
                  limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                  offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> dict:
    """Site verdicts by site id, filtered by province and by state (overall, or of one item)."""
    known_province(province)
    if item is not None and item not in snapshot.config.items:
        raise Problem(422, "Invalid request", f"unknown item {item!r}",
                      errors=[("item", f"is not one of {', '.join(snapshot.config.items)}")])
    return localize(verdict_page(snapshot, list_scope(viewer, province), state, item, limit, offset, status), lang)


@router.get("/verdicts/{site}", response_model=SiteVerdict, responses={404: {"model": ProblemDetail}, **NOT_READY})
def get_verdict(snapshot: SnapshotDep, viewer: ViewerDep, lang: ReasonLang,
                site: Annotated[str, Path(pattern=SLUG)]) -> dict:
    """One site's verdict: state, since when, every criterion with value, threshold, window and reason."""
    verdict = snapshot.verdict(site)
    if verdict is None:
        raise Problem(404, "Not Found", f"no site {site!r} in the inventory")
    require_province(viewer, verdict.get("province"), f"no site {site!r} in the inventory")
    return localize(verdict, lang)
