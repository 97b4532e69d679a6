"""POST /api/v1/reports: a batch of results from one agent, stored once and durably."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from commune_collector import intake
from commune_collector.api import arrival, ingest
from commune_collector.api.deps import StateDep
from commune_collector.api.schemas import AckPublic
from commune_collector.auth import SiteNotInInventory, Unauthorized, parse_token
from commune_collector.fleet.service import observe_report
from commune_collector.problems import Problem, documented
from commune_collector.runtime.state import CollectorState
from commune_collector.store.base import IngestItem, StoreBusy, StoreUnavailable
from commune_common.wire import Ack, Report

router = APIRouter(prefix="/api/v1", tags=["reports"])
bearer = HTTPBearer(auto_error=False, description="the site's token: commune-collector token issue SITE")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
RETRY_AFTER = "5"
STORES = ["spool"]  # the optional report fields kept here (Ack.stores): agents send only these


def _report_schema() -> tuple[dict[str, Any], dict[str, Any]]:
    """The request body's schema: the wire types themselves plus the rules ``ingest.validate`` adds."""
    (schema,), components = msgspec.json.schema_components([Report], ref_template="#/components/schemas/{name}")
    for name, rules in ingest.SCHEMA_RULES.items():
        for field, extra in rules.items():
            components[name]["properties"][field].update(extra)
    return {"required": True, "content": {"application/json": {"schema": schema}}}, components




_REQUEST_BODY, SCHEMA_COMPONENTS = _report_schema()


@router.post("/reports", response_model=AckPublic, openapi_extra={"requestBody": _REQUEST_BODY},
             responses={400: documented("not JSON, not UTF-8, or bad gzip"),
                        401: documented("no token, unknown or revoked token"),
                        403: documented("the token belongs to another site, or its site is no longer in the "
                                      "inventory"),
                        413: documented("the body, raw or decompressed, is too large"),
                        415: documented("not application/json, or an unsupported Content-Encoding"),
                        422: documented("well-formed JSON that is not a valid report; each field named"),
                        503: documented("the store is busy or unavailable; retry after Retry-After")})
async def post_report(request: Request, state: StateDep, credentials: Credentials) -> Response:
    """Store one report (gzip accepted). A resent report is acknowledged with duplicate=true."""
    try:
        ack = await _accept(request, state, credentials)
    except Problem as problem:
        state.ingest_stats.rejected(problem.reason)
        raise
    return Response(msgspec.json.encode(ack), media_type="application/json")


async def _accept(request: Request, state: CollectorState, credentials: HTTPAuthorizationCredentials | None) -> Ack:
    received_at = arrival.arrived_at(request.scope)  # when its bytes arrived, not when this handler ran
    limits = state.settings.ingest
    site = await _authenticate(state, credentials)
    ingest.check_media_type(request.headers.get("content-type"))
    body = await ingest.read_body(request.stream(), request.headers.get("content-length"), limits.max_body_bytes)
    data = ingest.decompress(body, request.headers.get("content-encoding"), limits.max_decompressed_bytes)
    report = ingest.decode(data)
    if report.site != site:
        raise Problem(403, "Forbidden", "this token may only report for its own site",
                      errors=[("site", "does not match the token's site")], reason="forbidden")
    errors = ingest.validate(report)
    if errors:
        raise Problem(422, "Invalid report", "; ".join(f"{f}: {m}" for f, m in errors[:5]), errors=errors,
                      reason="invalid")
    clock = intake.read_clock(report.sent_at, received_at, state.settings.clock)
    gzipped = body if data is not body else None
    outcome = await _store(state, intake.to_item(report, received_at, clock, data, gzipped))
    state.ingest_stats.accepted(len(report.results), sum(len(r.values) for r in report.results), outcome.duplicate)
    if not outcome.duplicate:
        await observe_report(state, report, received_at)  # the agent's config version and instance (fleet)
    if not outcome.duplicate and state.remote_writer is not None:
        state.remote_writer.offer(report.site, report.results, clock.shift_s)
    return Ack(accepted=report.seq, duplicate=outcome.duplicate, clock_offset_s=clock.offset_s, stores=STORES)


async def _authenticate(state: CollectorState, credentials: HTTPAuthorizationCredentials | None) -> str:
    """The site this request may report for (401 otherwise; the token is never logged)."""
    text = credentials.credentials if credentials else None
    parsed = parse_token(text or "")
    record = None
    if parsed is not None:
        cached = state.verifier.cached(parsed[0])
        try:
            record = cached.record if cached else await run_in_threadpool(state.verifier.lookup, parsed[0])
        except StoreUnavailable:
            raise Problem(503, "Store unavailable", "cannot check the token now; retry",
                          headers={"Retry-After": RETRY_AFTER}, reason="unavailable") from None
    try:
        return state.verifier.verify(text, record)
    except Unauthorized as exc:
        raise Problem(401, "Unauthorized", str(exc), headers={"WWW-Authenticate": "Bearer"},
                      reason="unauthorized") from None
    except SiteNotInInventory as exc:
        raise Problem(403, "Forbidden", str(exc), errors=[("site", f"{exc.site}: not in the inventory")],
                      reason="forbidden") from None


async def _store(state: CollectorState, item: IngestItem) -> Any:
    try:
        future = state.store.submit_ingest(item)
        return await asyncio.wrap_future(future)
    except StoreBusy as exc:
        raise Problem(503, "Busy", str(exc), headers={"Retry-After": RETRY_AFTER}, reason="unavailable") from None
    except StoreUnavailable as exc:
        raise Problem(503, "Store unavailable", "the report was not stored; retry",
                      headers={"Retry-After": RETRY_AFTER}, reason="unavailable") from exc
