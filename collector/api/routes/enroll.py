"""POST /api/v1/enroll: an enrollment token and a site id in, the site's own token out (once).

The rules live in ``collector.fleet.enroll``; this module maps them to HTTP:
401 for a token that cannot be used, 403 for a site outside its scope, 409
when another agent of the site is live, 422 for an unknown site (with the
nearest ids). The site token is in the body of the 200 only, never logged.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from commune_collector.api.deps import StateDep
from commune_collector.fleet.enroll import EnrollRefused, enroll
from commune_collector.fleet.service import fleet_of
from commune_collector.problems import Problem, documented

router = APIRouter(prefix="/api/v1", tags=["fleet"])
log = logging.getLogger(__name__)


class EnrollRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1, max_length=200, description="the enrollment token (ce_...)")
    site: str = Field(min_length=1, max_length=200, description="the site id, as on the inventory sheet")
    instance: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$", description="the agent's instance id")
    agent_version: str = Field(default="", max_length=64)


class EnrollResponse(BaseModel):
    site: str
    name: str
    province: str
    commune: str
    token: str = Field(description="the site's own token: store it (mode 0600), it is shown this once")
    reenrolled: bool




@router.post("/enroll", response_model=EnrollResponse,
             responses={400: documented("not JSON, or not UTF-8"),
                        401: documented("not an enrollment token, unknown, revoked, expired or used up"),
                        403: documented("the site is outside the enrollment token's scope"),
                        409: documented("another agent reported for this site recently; re-enrollment not allowed"),
                        422: documented("unknown site (with the nearest site ids) or an invalid request")})
async def post_enroll(body: EnrollRequest, state: StateDep) -> EnrollResponse:
    """Exchange an enrollment token for the site's token; the site's earlier tokens are revoked."""
    fleet = fleet_of(state)
    try:
        done = await run_in_threadpool(enroll, state.store, fleet.db, body.token, body.site.strip(), body.instance,
                                       live_within=fleet.settings.live_within)
    except EnrollRefused as exc:
        fleet.tracker.enrollments[exc.reason] = fleet.tracker.enrollments.get(exc.reason, 0) + 1
        log.info("enrollment of site %r refused: %s", body.site[:64], exc.reason)
        raise Problem(exc.status, exc.title, exc.detail, errors=[(exc.field, exc.detail)] if exc.field else None,
                      reason=exc.reason) from None
    outcome = "reenrolled" if done.reenrolled else "enrolled"
    fleet.tracker.enrollments[outcome] = fleet.tracker.enrollments.get(outcome, 0) + 1
    state.verifier.forget()  # the site's earlier tokens were revoked: no cached record may outlive that
    log.info("site %s %s by instance %s", done.site.id, outcome, body.instance)
    return EnrollResponse(site=done.site.id, name=done.site.name, province=done.site.province,
                          commune=done.site.commune, token=done.token, reenrolled=done.reenrolled)
