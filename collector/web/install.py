"""Mounts the status page on the app: the page routes, exports, the public view, login, static files.

Kept apart from ``routes`` because the exports, public and login modules
reuse the page plumbing in ``routes``; mounting them there made a circle.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.staticfiles import StaticFiles

from commune_collector.web import exports, fleet_page, login, public
from commune_collector.web.routes import HERE, WebUI, router


def install(app: FastAPI) -> None:
    """Mount the status page on ``app``: routes at /, /p/{slug}, /s/{site}; /static; gzip."""
    app.state.web_ui = WebUI.build()
    app.include_router(router)
    app.include_router(exports.router)
    app.include_router(public.router)
    app.include_router(login.router)
    app.include_router(fleet_page.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="web-static")
    if not any(m.cls is GZipMiddleware for m in app.user_middleware):
        app.add_middleware(GZipMiddleware, minimum_size=1024)
