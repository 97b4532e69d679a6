"""/api/v1/maintenance: declare, list and cancel maintenance windows (collector.maintenance).

Reading follows the province scope like every other read; declaring and
cancelling need an operator who manages every province the window touches
(a national operator, or the province's own). Both writes take a JSON body
(``POST .../cancel`` too, ``{}`` at least): not a request a page on another
site can make a logged-in browser send without CORS, which the collector
never grants. Cancelling is not a DELETE: the record stays in the history.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from commune_collector.access.deps import ACCESS_RESPONSES, ViewerDep
from commune_collector.access.roles import Principal
from commune_collector.api.deps import StoreDep, known_province
from commune_collector.maintenance.service import (
    MAX_REASON,
    MAX_SITES_NAMED,
    Declaration,
    MaintenanceError,
    NotAllowed,
    cancel,
    declare,
    listed,
    visible,
)
from commune_collector.maintenance.windows import MaintenanceWindow
from commune_collector.problems import Problem, ProblemDetail, documented
from commune_collector.provinces import provinces
from commune_collector.store.base import Store

router = APIRouter(prefix="/api/v1", tags=["maintenance"], responses=ACCESS_RESPONSES)
WINDOW_ID = r"^mw-[0-9a-f]{8}$"
SLUG = r"^[a-z0-9][a-z0-9-]{0,62}$"


class SitesCover(BaseModel):
    """Communes named by their site ids."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["sites"]
    sites: list[Annotated[str, Field(pattern=SLUG)]] = Field(min_length=1, max_length=MAX_SITES_NAMED)


class ProvinceCover(BaseModel):
    """Every commune of one province."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["province"]
    province: str = Field(json_schema_extra={"enum": sorted(provinces())}, description="province slug")


class GroupCover(BaseModel):
    """Every commune the inventory says shares this upstream (an aggregation router, one backbone link)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["group"]
    group: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$", description="the inventory's upstream name")


class Repeat(BaseModel):
    """A recurring window: every day or week, each occurrence starting before ``until``."""

    model_config = ConfigDict(extra="forbid")
    every: Literal["day", "week"]
    until: AwareDatetime


class WindowIn(BaseModel):
    """A window to declare. Times are ISO 8601 with their zone. Rules a schema cannot state are answered
    422 naming the field: communes not in the inventory, an end before the start, an occurrence longer
    than 31 days (or than its period), a start more than an hour ago or more than a year ahead."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "covers": {"kind": "sites", "sites": ["ha-noi-ba-dinh"]}, "starts_at": "2026-12-06T08:00:00+07:00",
        "ends_at": "2026-12-06T11:30:00+07:00", "reason": "EVN cắt điện theo lịch"}]})

    covers: Annotated[SitesCover | ProvinceCover | GroupCover, Field(discriminator="kind")]
    starts_at: AwareDatetime = Field(description="e.g. 2026-12-06T08:00:00+07:00")
    ends_at: AwareDatetime = Field(description="the end of the (first) occurrence")
    reason: str = Field(min_length=1, max_length=MAX_REASON, pattern=r"\S",
                        description="shown on the pages and in alerts")
    repeat: Repeat | None = None

    def declaration(self) -> Declaration:
        if isinstance(self.covers, ProvinceCover):
            scope, targets = "province", (self.covers.province,)
        elif isinstance(self.covers, GroupCover):
            scope, targets = "group", (self.covers.group,)
        else:
            scope, targets = "sites", tuple(self.covers.sites)
        repeat = self.repeat
        return Declaration(scope, targets, _ts(self.starts_at), _ts(self.ends_at), self.reason,
                           repeat.every if repeat else None, _ts(repeat.until) if repeat else None)


class WindowOut(BaseModel):
    id: str
    scope: Literal["sites", "province", "group"]
    targets: list[str]
    sites: list[str] = Field(description="the communes it covers, as resolved when it was declared")
    provinces: list[str]
    starts_at: float
    ends_at: float
    every: Literal["day", "week"] | None
    until: float | None
    reason: str
    created_by: str
    created_at: float
    cancelled_at: float | None
    cancelled_by: str | None
    cancel_note: str | None
    active: bool = Field(description="an occurrence covers now")


class CancelIn(BaseModel):
    """Why a window ends early; a JSON body even when empty (``{}``), so no cross-site form can send it."""

    model_config = ConfigDict(extra="forbid")
    note: str | None = Field(default=None, max_length=MAX_REASON,
                             description="why (work finished early, postponed), kept in the history")


class WindowList(BaseModel):
    items: list[WindowOut]


def _ts(value: datetime) -> float:
    return value.timestamp()


def _out(window: MaintenanceWindow, now: float) -> WindowOut:
    return WindowOut(**window.to_json(), active=window.active_at(now) is not None)


def _list(store: Store, viewer: Principal, show: str, province: str | None, now: float) -> WindowList:
    return WindowList(items=[_out(w, now) for w in listed(store, viewer, show, now, province)])


@router.get("/maintenance", response_model=WindowList, responses={422: {"model": ProblemDetail}})
async def list_windows(store: StoreDep, viewer: ViewerDep,
                       show: Annotated[Literal["current", "past", "all"], Query(
                           description="current: active or upcoming; past: ended or cancelled")] = "current",
                       province: Annotated[str | None, Query(pattern=SLUG)] = None) -> WindowList:
    """Maintenance windows this operator may see, by start."""
    known_province(province)
    return await run_in_threadpool(_list, store, viewer, show, province, time.time())


@router.get("/maintenance/{window_id}", response_model=WindowOut,
            responses={404: documented("no such window in this operator's scope")})
async def get_window(store: StoreDep, viewer: ViewerDep,
                     window_id: Annotated[str, Path(pattern=WINDOW_ID)]) -> WindowOut:
    window = await run_in_threadpool(store.get_window, window_id)
    if window is None or not visible(viewer, [window]):
        raise Problem(404, "Not Found", f"no maintenance window {window_id!r}")
    return _out(window, time.time())


@router.post("/maintenance", response_model=WindowOut, status_code=201, responses={
    400: documented("the body is not JSON"),
    403: documented("the operator does not manage every province the window touches"),
    422: documented("a field to fix: unknown commune or province, times out of range, no reason")})
async def declare_window(request: Request, response: Response, store: StoreDep, viewer: ViewerDep,
                         body: WindowIn) -> WindowOut:
    """Declare a window: its communes' time in it counts neither for nor against them, their alerts are
    silenced for exactly its time, and their pages say why."""
    _writer(viewer)
    now = time.time()
    try:
        window = await run_in_threadpool(declare, store, viewer, body.declaration(), now)
    except MaintenanceError as e:
        raise Problem(422, "Unprocessable Entity", str(e), errors=[(e.field, str(e))]) from e
    except NotAllowed as e:
        raise Problem(403, "Forbidden", str(e)) from e
    _resync(request)
    response.headers["Location"] = f"/api/v1/maintenance/{window.id}"
    return _out(window, now)


@router.post("/maintenance/{window_id}/cancel", response_model=WindowOut, responses={
    400: documented("the body is not JSON"),
    403: documented("the operator does not manage every province the window touches"),
    404: documented("no such window in this operator's scope"),
    409: documented("already cancelled")})
async def cancel_window(request: Request, store: StoreDep, viewer: ViewerDep,
                        window_id: Annotated[str, Path(pattern=WINDOW_ID)], body: CancelIn) -> WindowOut:
    """Cancel a window: its future stops at once (the verdict stays held to the end of the hour). Not a
    DELETE: the record stays, readable, in the history."""
    _writer(viewer)
    now = time.time()
    try:
        window = await run_in_threadpool(cancel, store, viewer, window_id, now, body.note)
    except LookupError as e:
        raise Problem(404, "Not Found", str(e)) from e
    except MaintenanceError as e:
        raise Problem(409, "Conflict", str(e)) from e
    except NotAllowed as e:
        raise Problem(403, "Forbidden", str(e)) from e
    _resync(request)
    return _out(window, now)


def _writer(viewer: Principal) -> None:
    if not viewer.may_manage(viewer.province):
        raise Problem(403, "Forbidden", f"the {viewer.role.value} role may not declare or cancel maintenance")


def _resync(request: Request) -> None:
    """Have the Alertmanager silences follow at once, when the collector mirrors them."""
    silences = getattr(request.app.state.collector, "silences", None)
    if silences is not None:
        silences.trigger()
