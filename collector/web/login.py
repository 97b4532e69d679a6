"""Signing in with an operator token in a browser, for deployments without single sign-on (and the demo).

``GET /login`` shows a form; ``POST /login`` checks the token like the gate
does and keeps it in an HttpOnly, SameSite=Strict cookie (Secure over TLS)
that lives no longer than the token; ``GET /logout`` drops it. The gate reads
the cookie when a request has no Authorization header. No script, no token in
a URL (it would end in histories and logs).
"""

from __future__ import annotations

import time
from html import escape
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from commune_collector.access.tokens import Denied, parse_operator_token

router = APIRouter(include_in_schema=False)
COOKIE = "commune_operator"
MAX_FORM = 4096
SESSION_MAX = 12 * 3600  # a browser session at most half a day, however long the token lives
HEADERS = {"Content-Security-Policy": "default-src 'self'; form-action 'self'; frame-ancestors 'none'",
           "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def _form(message: str = "") -> str:
    note = f'<p class="bad" data-testid="login-error">{escape(message)}</p>' if message else ""
    return ("<!doctype html><html lang=\"vi\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<title>Đăng nhập · commune-monitor</title><link rel=\"stylesheet\" href=\"/static/style.css\"></head>"
            "<body><main class=\"wrap\"><h1>Đăng nhập <small lang=\"en\">· Sign in</small></h1>"
            "<p>Dán mã truy cập của người vận hành (bắt đầu bằng <code>cmo_</code>). "
            "<span lang=\"en\">Paste your operator token (it starts with <code>cmo_</code>).</span></p>"
            f"{note}<form method=\"post\" action=\"/login\"><p><input type=\"password\" name=\"token\" "
            "autocomplete=\"off\" size=\"64\" required aria-label=\"token\"></p>"
            "<p><button type=\"submit\">Đăng nhập · Sign in</button></p></form></main></body></html>")


@router.get("/login", response_class=HTMLResponse)
def login_form() -> HTMLResponse:
    return HTMLResponse(_form(), headers=HEADERS)


@router.post("/login")
async def login(request: Request) -> Response:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            return HTMLResponse(_form("Yêu cầu quá lớn · Request too large"), 413, headers=HEADERS)
    token = (parse_qs(body.decode("utf-8", "replace")).get("token") or [""])[0].strip()
    state = getattr(request.app.state, "collector", None)
    parsed = parse_operator_token(token)
    if state is None or parsed is None:
        return HTMLResponse(_form("Đây không phải mã của người vận hành · Not an operator token"), 401,
                            headers=HEADERS)
    record = await run_in_threadpool(state.operators.lookup, parsed[0])
    try:
        principal = state.operators.verify(token, record)
    except Denied as exc:
        return HTMLResponse(_form(f"Mã không dùng được · {exc}"), 401, headers=HEADERS)
    if not principal.is_operator:
        return HTMLResponse(_form("Mã này chỉ để thu thập số liệu · A scraper's token"), 403, headers=HEADERS)
    lifetime = SESSION_MAX if record.expires_at is None else min(SESSION_MAX, int(record.expires_at - time.time()))
    response = RedirectResponse("/", status_code=303, headers=HEADERS)
    response.set_cookie(COOKIE, token, max_age=max(lifetime, 1), httponly=True, samesite="strict", path="/",
                        secure=request.url.scheme == "https")
    return response


@router.get("/logout")
def logout() -> Response:
    response = RedirectResponse("/login", status_code=303, headers=HEADERS)
    response.delete_cookie(COOKIE, path="/")
    return response
