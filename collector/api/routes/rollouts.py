"""/api/v1/rollouts: staged rollouts of the agent profile (collector/fleet/rollouts.py).

Any operator may watch a rollout (its figures are national aggregates, no
site named); starting, promoting and rolling back change what every province
is served, so they need the national role. Writes take a JSON body.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from commune_collector.access.deps import ACCESS_RESPONSES, ViewerDep
from commune_collector.access.roles import Principal, Role
from commune_collector.api.deps import StateDep
from commune_collector.fleet import rollouts
from commune_collector.fleet.rollout_task import follow
from commune_collector.fleet.service import fleet_of
from commune_collector.problems import Problem, documented
from commune_collector.store.base import all_sites

router = APIRouter(prefix="/api/v1", tags=["fleet"], responses=ACCESS_RESPONSES)
ROLLOUT_ID = r"^ro-[0-9a-f]{8}$"
SLUG = r"^[a-z0-9][a-z0-9-]{0,62}$"
MAX_PROFILE = 1_000_000


class RolloutIn(BaseModel):
    """A candidate profile (the YAML text) and who gets it first."""

    model_config = ConfigDict(extra="forbid")
    profile: str = Field(min_length=1, max_length=MAX_PROFILE, description="the candidate agent profile, YAML")
    name: str = Field(default="<candidate profile>", max_length=200, description="its file name, for messages")
    percent: float = Field(default=25.0, gt=0, le=100, description="share of the sites it changes")
    provinces: list[Annotated[str, Field(pattern=SLUG)]] = Field(default=[], max_length=63,
                                                                 description="only these provinces' sites")
    note: str = Field(default="", max_length=500)


class PromoteIn(BaseModel):
    """A wider share (``percent`` below 100), or every site it changes."""

    model_config = ConfigDict(extra="forbid")
    percent: float | None = Field(default=None, gt=0, le=100)
    force: bool = Field(default=False, description="promote a rollout that halted by itself")


class RollbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(default="", max_length=500)


def _writer(viewer: Principal) -> str:
    if viewer.role is not Role.NATIONAL:
        raise Problem(403, "Forbidden", f"the {viewer.role.value} role may not change a rollout (national only)")
    return viewer.name


def _problem(exc: rollouts.RolloutError) -> Problem:
    titles = {404: "Not Found", 409: "Conflict", 422: "Unprocessable Entity"}
    errors = [(exc.field, str(exc))] if exc.field else None
    return Problem(exc.status, titles.get(exc.status, "Error"), str(exc), errors=errors)


@router.get("/rollouts")
async def list_rollouts(state: StateDep, viewer: ViewerDep) -> dict[str, Any]:
    """The latest rollouts, newest first."""
    fleet = fleet_of(state)
    items = await run_in_threadpool(fleet.rollouts.recent)
    return {"items": [{"id": r.id, "state": r.state, "percent": r.percent, "provinces": list(r.provinces),
                       "candidate": r.candidate_name, "started_by": r.started_by, "started_at": r.started_at,
                       "ended_at": r.ended_at, "halt_reason": r.halt_reason or None} for r in items]}


@router.get("/rollouts/{rollout_id}", responses={404: documented("no such rollout")})
async def get_rollout(state: StateDep, viewer: ViewerDep,
                      rollout_id: Annotated[str, Path(pattern=ROLLOUT_ID)]) -> dict[str, Any]:
    """Adoption, check failure and reporting rates on the new version next to the old, the halt rule, history."""
    return await _status(state, rollout_id)


async def _status(state: Any, rollout_id: str) -> dict[str, Any]:
    fleet = fleet_of(state)
    try:
        return await run_in_threadpool(rollouts.status, fleet.rollouts, fleet.profiles, rollout_id,
                                       fleet.settings.rollout, time.time())
    except rollouts.RolloutError as exc:
        raise _problem(exc) from None


async def _act(state: Any, rollout_id: str, action: Any, *args: Any) -> dict[str, Any]:
    """Run a state change (``action(db, *args, now)``), follow it here at once, answer the new status."""
    try:
        await run_in_threadpool(action, fleet_of(state).rollouts, *args, time.time())
    except rollouts.RolloutError as exc:
        raise _problem(exc) from None
    await follow(state)
    return await _status(state, rollout_id)


@router.post("/rollouts", status_code=201, responses={
    400: documented("the body is not JSON"), 403: documented("not a national operator"), 409: documented("another rollout is still open"),
    422: documented("an invalid candidate, an unknown province, a share that picks no site")})
async def start_rollout(response: Response, state: StateDep, viewer: ViewerDep,
                        body: RolloutIn) -> dict[str, Any]:
    """Serve the candidate to a share of the sites it changes; the others keep the old version."""
    actor = _writer(viewer)
    fleet = fleet_of(state)
    sites = await run_in_threadpool(all_sites, state.store)
    try:
        started = await run_in_threadpool(rollouts.start, fleet.rollouts, fleet.profiles, sites, body.profile,
                                          body.name, body.percent, body.provinces, body.note, actor, time.time())
    except rollouts.RolloutError as exc:
        raise _problem(exc) from None
    await follow(state)
    response.headers["Location"] = f"/api/v1/rollouts/{started.rollout.id}"
    return {**await _status(state, started.rollout.id), "model_issues": list(started.issues)}


@router.post("/rollouts/{rollout_id}/promote", responses={
    400: documented("the body is not JSON"), 403: documented("not a national operator"), 404: documented("no such rollout"),
    409: documented("not running (halted: force it), or not a wider share")})
async def promote_rollout(state: StateDep, viewer: ViewerDep, rollout_id: Annotated[str, Path(pattern=ROLLOUT_ID)],
                          body: PromoteIn) -> dict[str, Any]:
    """Widen the share, or serve the candidate to every site it changes (it becomes the profile)."""
    actor = _writer(viewer)
    return await _act(state, rollout_id, rollouts.promote, rollout_id, body.percent, body.force, actor)


@router.post("/rollouts/{rollout_id}/rollback", responses={
    400: documented("the body is not JSON"), 403: documented("not a national operator"), 404: documented("no such rollout"),
    409: documented("already ended")})
async def rollback_rollout(state: StateDep, viewer: ViewerDep, rollout_id: Annotated[str, Path(pattern=ROLLOUT_ID)],
                           body: RollbackIn) -> dict[str, Any]:
    """End the rollout: every site is served the old version again."""
    actor = _writer(viewer)
    return await _act(state, rollout_id, rollouts.rollback, rollout_id, body.reason, actor)
