"""GET /api/v1/sites and /api/v1/sites/{id}: the inventory with what each site last reported."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from starlette.concurrency import run_in_threadpool

from commune_collector.access.deps import ACCESS_RESPONSES, ViewerDep, list_scope
from commune_collector.access.roles import Principal
from commune_collector.api.deps import StoreDep, known_province
from commune_collector.api.schemas import (
    CheckLatest,
    ExpectedPublic,
    SiteDetail,
    SitePage,
    SitePublic,
)
from commune_collector.problems import Problem, ProblemDetail
from commune_collector.provinces import provinces
from commune_collector.sites import Site
from commune_collector.store.base import SiteStatus, Store

router = APIRouter(prefix="/api/v1", tags=["sites"], responses=ACCESS_RESPONSES)
SLUG = r"^[a-z0-9][a-z0-9-]{0,62}$"


def _public(site: Site, status: SiteStatus | None) -> dict:
    province = provinces().get(site.province)
    return {"id": site.id, "name": site.name, "province": site.province,
            "province_name": province.name if province else site.province, "commune": site.commune,
            "expected": ExpectedPublic(links=list(site.links), devices=list(site.devices), power=list(site.power)),
            "upstream": site.upstream,
            "last_report_at": status.last_report_at if status else None,
            "clock_offset_s": status.clock_offset_s if status else None,
            "clock_suspect": bool(status and status.clock_flagged),
            "agent_version": status.agent_version if status else None}


def _page(store: Store, province: str | None, limit: int, offset: int) -> SitePage:
    page = store.list_sites(province, limit, offset)
    status = store.site_status([s.id for s in page.items]) if page.items else {}
    return SitePage(total=page.total, limit=limit, offset=offset,
                    items=[SitePublic(**_public(s, status.get(s.id))) for s in page.items])


@router.get("/sites", response_model=SitePage, responses={422: {"model": ProblemDetail}})
async def list_sites(store: StoreDep, viewer: ViewerDep,
                     province: Annotated[str | None, Query(pattern=SLUG, description="province slug")] = None,
                     limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                     offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> SitePage:
    """Sites by id, optionally of one province, with the total count for paging."""
    known_province(province)
    return await run_in_threadpool(_page, store, list_scope(viewer, province), limit, offset)


def _detail(store: Store, site_id: str, viewer: Principal) -> SiteDetail | None:
    site = store.get_site(site_id)
    if site is None or not viewer.may_read_province(site.province):  # out of scope reads as absent
        return None
    status = store.site_status([site_id]).get(site_id)
    latest = [CheckLatest(check=v.check, probe=v.probe, ts=v.ts, ok=v.ok, duration_s=v.duration_s, reason=v.reason,
                          labels=v.labels, values=v.values) for v in store.latest(site_id).values()]
    return SiteDetail(**_public(site, status), instance=status.instance if status else None,
                      last_seq=status.last_seq if status else None, latest=latest)


@router.get("/sites/{site_id}", response_model=SiteDetail, responses={404: {"model": ProblemDetail}})
async def get_site(store: StoreDep, viewer: ViewerDep, site_id: Annotated[str, Path(pattern=SLUG)]) -> SiteDetail:
    """One site: inventory, last report, clock offset and the latest round of every check."""
    detail = await run_in_threadpool(_detail, store, site_id, viewer)
    if detail is None:
        raise Problem(404, "Not Found", f"no site {site_id!r} in the inventory")
    return detail
