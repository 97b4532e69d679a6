"""RFC 7807 problem details: every error the API returns has the same shape.

``{"type", "title", "status", "detail", "errors": [{"field", "message"}]}``
served as ``application/problem+json``, so an agent or an operator can tell
which field of which request was wrong without reading server logs.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

log = logging.getLogger("commune_collector.api")
MEDIA_TYPE = "application/problem+json"


class FieldProblem(BaseModel):
    field: str
    message: str


class ProblemDetail(BaseModel):
    """The body of every 4xx/5xx answer."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str = ""
    errors: list[FieldProblem] = []


class Problem(Exception):
    """Raise anywhere in a route to answer with a problem document."""

    def __init__(self, status: int, title: str, detail: str = "", *, errors: list[tuple[str, str]] | None = None,
                 headers: dict[str, str] | None = None, reason: str = ""):
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors or []
        self.headers = headers or {}
        self.reason = reason or title.lower().replace(" ", "_")


def documented(description: str) -> dict[str, Any]:
    """An OpenAPI ``responses`` entry for a problem answer: what a client may meet, and why."""
    return {"description": description, "model": ProblemDetail, "content": {MEDIA_TYPE: {}}}


def problem_response(problem: Problem) -> Response:
    body = {"type": "about:blank", "title": problem.title, "status": problem.status, "detail": problem.detail,
            "errors": [{"field": f, "message": m} for f, m in problem.errors]}
    return Response(json.dumps(body, ensure_ascii=False), status_code=problem.status, media_type=MEDIA_TYPE,
                    headers=problem.headers)


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (("." if out else "") + str(part))
    return out


def _allowed(request: Request) -> str:
    """Every method some route serves at this path (Starlette names only the first route's: one per method
    here)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if route.matches(request.scope)[0] is not Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return ", ".join(sorted(methods))


def install(app: FastAPI) -> None:
    """Answer every error path with problem+json, 500s included (logged, never leaked)."""

    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Problem)
        return problem_response(exc)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        title = {404: "Not Found", 405: "Method Not Allowed"}.get(exc.status_code, "HTTP error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = _allowed(request)
        return problem_response(Problem(exc.status_code, title, str(exc.detail), headers=headers))

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [(_loc(tuple(e.get("loc", ()))), str(e.get("msg", "invalid"))) for e in exc.errors()]
        return problem_response(Problem(422, "Invalid request", "the request failed validation", errors=errors))

    async def on_crash(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(Problem(500, "Internal error", "see the collector's log"))

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(Exception, on_crash)
