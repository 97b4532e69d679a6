"""GET /api/v1/agent-config: the calling site's desired agent config (site token), versioned.

The ETag is the config's content hash; an agent sends it back in
If-None-Match and an unchanged config costs a 304 with no body. GET
/api/v1/sites/{site}/agent shows what the site's agent last said about its
config (applied version, apply error) and whether two agents push as it.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials
from starlette.concurrency import run_in_threadpool

from commune_collector.access.deps import ACCESS_RESPONSES, ViewerDep, list_scope, require_province
from commune_collector.api.deps import StateDep, known_province
from commune_collector.api.routes.reports import Credentials, _authenticate
from commune_collector.fleet.desired import DesiredError
from commune_collector.fleet.service import fleet_of
from commune_collector.problems import Problem, documented
from commune_common.yamlconf import ConfigError

router = APIRouter(prefix="/api/v1", tags=["fleet"])
SLUG = r"^[a-z0-9][a-z0-9-]{0,62}$"


@router.get("/agent-config", responses={
    304: {"description": "unchanged since the ETag sent in If-None-Match"},
    401: documented("no site token, or an unknown or revoked one"),
    403: documented("the token's site is no longer in the inventory"),
    404: documented("the token's site is no longer in the inventory"),
    503: documented("the profile cannot produce this site's config now; retry after Retry-After")})
async def get_agent_config(state: StateDep, credentials: Credentials,
                           if_none_match: Annotated[str | None, Header()] = None) -> Response:
    """``{"site", "version", "config", "issues"}``; ``issues``: what the collector's copy of the agent model
    finds wrong (the agent's own model decides)."""
    site_id = await _site_of(state, credentials)
    fleet = fleet_of(state)
    site = await run_in_threadpool(state.store.get_site, site_id)
    if site is None:
        raise Problem(404, "Not Found", f"site {site_id} is no longer in the inventory")
    try:
        desired = await run_in_threadpool(fleet.profiles.desired, site)
    except (ConfigError, DesiredError) as exc:
        detail = "; ".join(str(i) for i in exc.issues[:3]) if isinstance(exc, ConfigError) else str(exc)
        raise Problem(503, "Config unavailable", f"the profile cannot produce this site's config now: {detail}",
                      headers={"Retry-After": "300"}) from None
    fleet.tracker.served(site.id, desired.version, time.time())
    etag = f'"{desired.version}"'
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if if_none_match and etag in [t.strip() for t in if_none_match.split(",")]:
        return Response(status_code=304, headers=headers)
    return JSONResponse({"site": site.id, "version": desired.version, "config": desired.config,
                         "issues": list(desired.issues)}, headers=headers)


async def _site_of(state: StateDep, credentials: HTTPAuthorizationCredentials | None) -> str:
    return await _authenticate(state, credentials)


@router.get("/sites/{site}/agent", responses={**ACCESS_RESPONSES, 404: documented("no such site, or outside the "
                                                                               "operator's province")})
async def get_site_agent(state: StateDep, viewer: ViewerDep, site: Annotated[str, Path(pattern=SLUG)]) -> dict:
    """The site's agent: applied config version vs desired, apply error, enrollments, warnings."""
    fleet = fleet_of(state)
    record = await run_in_threadpool(state.store.get_site, site)
    if record is None:
        raise Problem(404, "Not Found", f"no site {site!r} in the inventory")
    require_province(viewer, record.province, f"no site {site!r} in the inventory")
    now = time.time()
    agent = fleet.tracker.state(site, now) or {}
    try:
        desired = (await run_in_threadpool(fleet.profiles.desired, record)).version
    except (ConfigError, DesiredError):
        desired = None
    enrollments = await run_in_threadpool(fleet.db.enrollments, site)
    warnings = []
    if len(agent.get("instances_pushing", [])) > 1:  # type: ignore[arg-type]
        warnings.append({"kind": "duplicate_agent", "message": "Hai thiết bị đang gửi báo cáo cho cùng một điểm "
                         f"(two agents push as this site: {', '.join(agent['instances_pushing'])})"})  # type: ignore[arg-type]
    if agent.get("config_error"):
        warnings.append({"kind": "config_apply_error", "message": "Thiết bị không áp dụng được cấu hình mới "
                         f"(the agent refused the served config: {agent['config_error']})"})
    return {"site": site, "desired_config_version": desired, **agent, "warnings": warnings,
            "enrollments": [{"enroll_token": e.enroll_token, "instance": e.instance, "enrolled_at": e.enrolled_at,
                             "reenrolled": e.reenrolled} for e in enrollments]}


@router.get("/fleet", responses={**ACCESS_RESPONSES, 404: documented("a province outside the operator's own"),
                                 422: documented("an unknown province")})
async def get_fleet(state: StateDep, viewer: ViewerDep,
                    province: Annotated[str | None, Query(pattern=SLUG, description="province slug")] = None) -> dict:
    """Every site's agent (version, desired vs applied config, last report, enrollment) and per-province counts."""
    province = list_scope(viewer, known_province(province))  # a province operator sees its own communes only
    from dataclasses import asdict

    from commune_collector.fleet.view import fleet_rows, province_counts

    fleet = fleet_of(state)
    rows = await run_in_threadpool(fleet_rows, state.store, fleet.db, fleet.profiles, time.time(), province,
                                   fleet.settings.live_within, fleet.settings.duplicate_window)
    return {"sites": [asdict(r) for r in rows], "provinces": province_counts(rows)}
