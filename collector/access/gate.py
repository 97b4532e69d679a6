"""The gate in front of every route: authenticate, refuse by default, remember the principal.

Pure ASGI (cheap, and outside FastAPI's routing, so a route added without
thinking about access is still closed). Open paths: health, ingest (it has
its own per-site tokens), static files and, when enabled, the public view.
Everything else needs an operator: an operator bearer token, or a user and
groups passed by a trusted single-sign-on proxy. ``/metrics`` takes national
operators and scrapers' tokens; scrapers' tokens read nothing else.

The principal is stored in ``scope["state"]["principal"]`` for the routes
(``access.deps``) to cut what they answer to its scope.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from starlette.concurrency import run_in_threadpool

from commune_collector.access.proxy import ProxyDenied, is_trusted, principal_from_headers
from commune_collector.access.roles import Principal
from commune_collector.access.tokens import Denied, looks_like_site_token, parse_operator_token
from commune_collector.store.base import StoreUnavailable

log = logging.getLogger("commune_collector.access")

# /api/v1/whoami and /api/v1/agent-config authenticate the site token themselves; /api/v1/enroll an
# enrollment token (collector.fleet)
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/api/v1/reports", "/api/v1/whoami", "/api/v1/agent-config",
                        "/api/v1/enroll", "/login", "/logout"})
COOKIE = "commune_operator"  # collector.web.login: an operator token kept by the browser
OPEN_PREFIXES = ("/static/",)
PUBLIC_PREFIX = "/public"
METRICS_PATH = "/metrics"
MACHINE_PREFIXES = ("/api/", "/metrics", "/openapi.json", "/docs", "/redoc", "/export/")
Send = Callable[[dict[str, Any]], Awaitable[None]]


class Refusal(Exception):
    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status = status
        self.detail = detail


def is_open(path: str, public_view: bool) -> bool:
    if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
        return True
    return public_view and (path == PUBLIC_PREFIX or path.startswith(PUBLIC_PREFIX + "/"))


def refusal_counter(registry: CollectorRegistry) -> Counter:
    """Refusals by status: a rise of 401s is someone guessing, of 403s a role set up wrong."""
    return Counter("commune_collector_access_refused_requests_total",
                   "Requests the access gate refused, by status (401 no usable credential, 403 role, "
                   "503 credentials cannot be checked)", ["status"], registry=registry)


class AccessGate:
    """ASGI middleware; reads the running collector's state (settings, verifier) at each request."""

    def __init__(self, app: Callable, refused: Counter | None = None):
        self.app = app
        self.refused = refused

    async def __call__(self, scope: dict, receive: Callable, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = getattr(scope["app"].state, "collector", None)
        path = scope.get("path", "")
        settings = getattr(state, "settings", None)
        public_view = bool(settings and settings.access.public_view)
        if is_open(path, public_view):
            await self.app(scope, receive, send)
            return
        try:
            principal = await authenticate(scope, state)
            check_path(principal, path)
        except Refusal as refusal:
            if self.refused is not None:
                self.refused.labels(str(refusal.status)).inc()
            log.debug("refused %s %s: %s", scope.get("method"), path, refusal.detail)  # never the credential
            await refuse(scope, send, refusal, public_view)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


def _header(scope: dict, name: str) -> str | None:
    wanted = name.lower().encode("latin-1")
    for key, value in scope.get("headers", []):
        if key == wanted:
            return value.decode("latin-1")
    return None


async def authenticate(scope: dict, state: Any) -> Principal:
    """The principal of this request, or Refusal(401/403/503) saying why not."""
    if state is None:
        raise Refusal(503, "the collector is starting")
    authorization = _header(scope, "authorization") or _cookie_bearer(scope)
    if authorization:
        return await _from_bearer(authorization, state)
    proxy = state.settings.access.proxy
    client = scope.get("client")
    user = _header(scope, proxy.user_header)
    if user and is_trusted(proxy, client[0] if client else None):
        try:
            return principal_from_headers(proxy, user.strip(), _header(scope, proxy.groups_header) or "")
        except ProxyDenied as exc:
            raise Refusal(403, str(exc)) from None
    raise Refusal(401, "sign in: an operator token (Authorization: Bearer cmo_...) or the single-sign-on proxy")


def _cookie_bearer(scope: dict) -> str | None:
    """The token a browser keeps after /login, as a bearer header would carry it."""
    from http.cookies import SimpleCookie

    text = _header(scope, "cookie")
    if not text or COOKIE not in text:
        return None
    cookie = SimpleCookie()
    try:
        cookie.load(text)
    except Exception:  # noqa: BLE001 - a malformed cookie header is no credential
        return None
    morsel = cookie.get(COOKIE)
    return f"Bearer {morsel.value}" if morsel and morsel.value else None


async def _from_bearer(authorization: str, state: Any) -> Principal:
    scheme, _, text = authorization.partition(" ")
    text = text.strip()
    if scheme.lower() != "bearer" or not text:
        raise Refusal(401, "use Authorization: Bearer <operator token>")
    if looks_like_site_token(text):
        raise Refusal(401, "a site's token only sends reports; reading needs an operator token")
    parsed = parse_operator_token(text)
    if parsed is None:
        raise Refusal(401, "not an operator token")
    verifier = state.operators
    cached = verifier.cached(parsed[0])
    try:
        record = cached.record if cached else await run_in_threadpool(verifier.lookup, parsed[0])
    except StoreUnavailable:
        raise Refusal(503, "cannot check the token now; retry") from None
    try:
        return verifier.verify(text, record)
    except Denied as exc:
        raise Refusal(401, str(exc)) from None


def check_path(principal: Principal, path: str) -> None:
    """/metrics for national operators and scrapers; scrapers nothing else."""
    if path == METRICS_PATH:
        if not principal.may_read_metrics():
            raise Refusal(403, f"/metrics is for national operators and Prometheus, not for {principal.describe()}")
    elif not principal.is_operator:
        raise Refusal(403, "a scraper's token reads /metrics only")


async def refuse(scope: dict, send: Send, refusal: Refusal, public_view: bool) -> None:
    """problem+json for machines, a short page in Vietnamese and English for people."""
    path = scope.get("path", "")
    headers = [(b"cache-control", b"no-store")]
    if refusal.status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="commune-monitor"'))
    if refusal.status == 503:
        headers.append((b"retry-after", b"5"))
    if path.startswith(MACHINE_PREFIXES):
        title = {401: "Unauthorized", 403: "Forbidden"}.get(refusal.status, "Service Unavailable")
        body = json.dumps({"type": "about:blank", "title": title, "status": refusal.status,
                           "detail": refusal.detail, "errors": []}, ensure_ascii=False).encode()
        headers.append((b"content-type", b"application/problem+json"))
    else:
        from commune_collector.web.denied import denied_html
        body = denied_html(refusal.status, refusal.detail, public_view).encode()
        headers += [(b"content-type", b"text/html; charset=utf-8"),
                    (b"content-security-policy", b"default-src 'none'; style-src 'self'; frame-ancestors 'none'")]
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
