"""GET /api/v1/whoami: what the collector knows about the site a token belongs to.

An installer's `commune-agent check-collector` asks it, with the site's own
token, to learn in one request whether the token is accepted, for which site,
whether that site is in the inventory (and its name), the collector's clock,
and the last report the collector stored from it. It answers only for the
token's own site, so a token reveals nothing about other sites.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from commune_collector.api.deps import StateDep
from commune_collector.auth import Unauthorized, parse_token
from commune_collector.problems import Problem, ProblemDetail
from commune_collector.provinces import provinces
from commune_collector.runtime.state import CollectorState
from commune_collector.store.base import StoreUnavailable

router = APIRouter(prefix="/api/v1", tags=["agents"])
bearer = HTTPBearer(auto_error=False, description="the site's token: commune-collector token issue SITE")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


class LastReport(BaseModel):
    model_config = ConfigDict(extra="forbid")
    instance: str
    seq: int
    received_at: float
    agent_version: str


class WhoAmI(BaseModel):
    """The token's site as the collector sees it."""

    model_config = ConfigDict(extra="forbid")
    site: str
    in_inventory: bool
    name: str | None = None
    province: str | None = None
    province_name: str | None = None
    commune: str | None = None
    server_time: float
    last_report: LastReport | None = None
    asked_site_in_inventory: bool | None = Field(
        default=None, description="with ?site=ID: whether that site is in the inventory (an installer's typo "
                                  "in site.id shows as a token for another site)")


def _site_of(state: CollectorState, text: str | None) -> str:
    """The token's site (blocking: runs in a worker thread); Unauthorized otherwise."""
    parsed = parse_token(text or "")
    record = state.verifier.lookup(parsed[0]) if parsed else None
    return state.verifier.verify(text, record)


def _describe(state: CollectorState, site_id: str, asked: str | None) -> WhoAmI:
    me = _site(state, site_id)
    if asked is not None:
        me.asked_site_in_inventory = asked == site_id and me.in_inventory or state.store.get_site(asked) is not None
    return me


def _site(state: CollectorState, site_id: str) -> WhoAmI:
    site = state.store.get_site(site_id)
    status = state.store.site_status([site_id]).get(site_id)
    last = LastReport(instance=status.instance, seq=status.last_seq, received_at=status.last_report_at,
                      agent_version=status.agent_version) if status else None
    if site is None:
        return WhoAmI(site=site_id, in_inventory=False, server_time=time.time(), last_report=last)
    province = provinces().get(site.province)
    return WhoAmI(site=site_id, in_inventory=True, name=site.name, province=site.province,
                  province_name=province.name if province else site.province, commune=site.commune,
                  server_time=time.time(), last_report=last)


@router.get("/whoami", response_model=WhoAmI,
            responses={401: {"model": ProblemDetail}, 503: {"model": ProblemDetail}})
async def whoami(state: StateDep, credentials: Credentials,
                 site: Annotated[str | None, Query(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$",
                                                   description="a site id to look up in the inventory")] = None,
                 ) -> WhoAmI:
    """The token's site: in the inventory or not, its name, the server's clock, its last stored report."""
    text = credentials.credentials if credentials else None
    try:
        site_id = await run_in_threadpool(_site_of, state, text)
        return await run_in_threadpool(_describe, state, site_id, site)
    except Unauthorized as exc:
        raise Problem(401, "Unauthorized", str(exc), headers={"WWW-Authenticate": "Bearer"}) from None
    except StoreUnavailable:
        raise Problem(503, "Store unavailable", "cannot check the token now; retry",
                      headers={"Retry-After": "5"}) from None
