"""GET /api/v1/provinces and /api/v1/provinces/{slug}: communes completed per province, "N/34" nationally."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from commune_collector.access.deps import ACCESS_RESPONSES, ViewerDep, require_province
from commune_collector.api.routes.verdicts import NOT_READY, SLUG, ReasonLang, SnapshotDep
from commune_collector.judge.documents import ProvinceDetail, ProvincesDoc, province_detail
from commune_collector.problems import Problem, ProblemDetail
from commune_collector.reasons import localize

router = APIRouter(prefix="/api/v1", tags=["verdicts"], responses=ACCESS_RESPONSES)


@router.get("/provinces", response_model=ProvincesDoc, responses=NOT_READY)
def list_provinces(snapshot: SnapshotDep, viewer: ViewerDep) -> dict:
    """Every province: communes completed per item and overall, done or not; the national table.

    Counts only, so every operator reads it, province operators included.
    """
    return snapshot.rollup.to_json()


@router.get("/provinces/{slug}", response_model=ProvinceDetail,
            responses={404: {"model": ProblemDetail}, **NOT_READY})
def get_province(snapshot: SnapshotDep, viewer: ViewerDep, lang: ReasonLang,
                 slug: Annotated[str, Path(pattern=SLUG)]) -> dict:
    """One province's roll-up and its communes, each with the criteria it fails and why."""
    require_province(viewer, slug, f"no province {slug!r}")
    detail = province_detail(snapshot, slug)
    if detail is None:
        raise Problem(404, "Not Found", f"no province {slug!r}")
    return localize(detail, lang)
