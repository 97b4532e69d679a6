"""The status page: national table, then province, then commune, in Vietnamese and English.

Server-rendered HTML (Jinja2) from the same documents as the JSON API, read
in-process from the judge. Every page is one read of the judge's snapshot plus
templating, gzip-compressed, with no script: fast on a phone and fine with
3,321 communes because commune lists are filtered and paginated here.

``install(app)`` is the one call the app factory makes: it adds this router,
the static files and gzip.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader
from starlette.middleware.gzip import GZipMiddleware

from commune_collector.alerting.rules import RULES, UPSTREAM
from commune_collector.web import fmt
from commune_collector.web.chart import ChartLabels, Point, burnup_svg
from commune_collector.web.i18n import DEFAULT_LANG, LANGS, Translator, load_translators
from commune_collector.web.source import JudgeSource, VerdictSource

HERE = Path(__file__).parent
PAGE_SIZE = 50
HISTORY_DAYS = 35
STATE_ORDER = {"not_completed": 0, "unknown": 1, "completed": 2}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "script-src 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)
Lang = Annotated[str, Query(pattern="^(vi|en)$", description="page language")]


@dataclass
class WebUI:
    """What the pages share, built once at install (never at import)."""

    env: Environment
    translators: dict[str, Translator]
    static_version: str

    @classmethod
    def build(cls) -> WebUI:
        env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True,
                          trim_blocks=True, lstrip_blocks=True)
        env.globals["fmt"] = fmt
        css = (HERE / "static" / "style.css").read_bytes()
        return cls(env, load_translators(), hashlib.sha256(css).hexdigest()[:10])


def install(app: FastAPI) -> None:
    """Mount the status page on ``app``: routes at /, /p/{slug}, /s/{site}; /static; gzip."""
    app.state.web_ui = WebUI.build()
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="web-static")
    if not any(m.cls is GZipMiddleware for m in app.user_middleware):
        app.add_middleware(GZipMiddleware, minimum_size=1024)


def get_ui(request: Request) -> WebUI:
    ui = getattr(request.app.state, "web_ui", None)
    if ui is None:
        ui = request.app.state.web_ui = WebUI.build()
    return ui


def get_source(request: Request) -> VerdictSource | None:
    """``app.state.verdict_source`` if set (tests), else the running collector's judge (None: no judge)."""
    source = getattr(request.app.state, "verdict_source", None)
    if source is not None:
        return source
    judge = getattr(getattr(request.app.state, "collector", None), "judge", None)
    return None if judge is None else JudgeSource(judge)


UI = Annotated[WebUI, Depends(get_ui)]
Source = Annotated[VerdictSource | None, Depends(get_source)]


# -- page plumbing ----------------------------------------------------------------


class Page:
    """Renders one template with the helpers every page uses (t, url, lang switch)."""

    def __init__(self, ui: WebUI, request: Request, lang: str):
        self.ui, self.request, self.lang = ui, request, lang
        self.t = ui.translators[lang]
        self.now = time.time()

    def url(self, path: str, **params: Any) -> str:
        query = {k: v for k, v in params.items() if v not in (None, "") and not (k == "page" and v == 1)}
        if self.lang != DEFAULT_LANG:
            query["lang"] = self.lang
        return f"{path}?{urlencode(query)}" if query else path

    def switch_url(self) -> str:
        other = next(lang for lang in LANGS if lang != self.lang)
        params = dict(self.request.query_params)
        params.pop("lang", None)
        if other != DEFAULT_LANG:
            params["lang"] = other
        query = urlencode(params)
        return f"{self.request.url.path}?{query}" if query else self.request.url.path

    def render(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = self.ui.env.get_template(template).render(
            t=self.t, lang=self.lang, url=self.url, switch_url=self.switch_url(), now=self.now,
            static=f"/static/style.css?v={self.ui.static_version}", **context)
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)

    def not_ready(self) -> HTMLResponse:
        """Before the judge's first pass: say so (503) rather than show zeros that look like verdicts."""
        return self.render("not_found.html", 503, title=self.t("no_data_title"), message=self.t("no_data_text"))


def _item_titles(data: dict[str, Any], t: Translator) -> dict[str, str]:
    return {item["id"]: t.pick(item.get("title"), item["id"]) for item in data.get("items", [])}


def _province_names(data: dict[str, Any]) -> dict[str, str]:
    return {p["slug"]: p.get("name") or p["slug"] for p in data.get("provinces", [])}


# -- deadline and history -----------------------------------------------------------


def _points(history: dict[str, Any]) -> list[Point]:
    return [Point(date.fromisoformat(d["date"]), int(d["completed"]), int(d["total"]))
            for d in history.get("series", [])]


def _deadline_view(deadline: str | None, completed: int, total: int, points: list[Point],
                   today: date, t: Translator, lang: str) -> dict[str, Any]:
    """Days left, the pace needed to finish on time and the pace of the last week."""
    view: dict[str, Any] = {"date": deadline, "completed": completed, "total": total,
                            "percent": fmt.percent(completed, total),
                            "share": completed / total if total else 0.0,
                            "progress": t("communes_completed", completed=fmt.number(completed, lang),
                                          total=fmt.number(total, lang))}
    remaining = total - completed
    if deadline:
        days = (date.fromisoformat(deadline) - today).days
        view["days"] = (t("days_left", days=days) if days > 1 else t("day_left") if days == 1
                        else t("deadline_today") if days == 0 else t("days_over", days=-days))
        view["late"] = days < 0 and remaining > 0
        if remaining <= 0:
            view["pace"] = t("pace_done")
        elif days > 0:
            view["pace"] = t("pace_needed", rate=fmt.number(math.ceil(remaining / days), lang))
    recent = [p for p in points if (today - p.day).days <= 7]
    if len(recent) >= 2 and remaining > 0:
        span = (recent[-1].day - recent[0].day).days or 1
        rate = (recent[-1].completed - recent[0].completed) / span
        view["recent"] = t("pace_recent", rate=f"{rate:.1f}" if lang == "en" else f"{rate:.1f}".replace(".", ","))
    return view


def _chart(history: dict[str, Any], today: date, t: Translator) -> dict[str, Any]:
    points = _points(history)
    deadline = history.get("deadline")
    if not points:
        return {"svg": "", "points": []}
    labels = ChartLabels(t("history_chart_label", first=points[0].day.isoformat(), last=points[-1].day.isoformat()),
                         t("chart_completed"), t("chart_total"), t("chart_needed"), t("chart_deadline"),
                         t("chart_today"))
    svg = burnup_svg(points, date.fromisoformat(deadline) if deadline else None, today, labels)
    return {"svg": svg, "points": points, "label": labels.title}


# -- national -------------------------------------------------------------------------


def _national_items(data: dict[str, Any], t: Translator) -> list[dict[str, Any]]:
    titles = _item_titles(data, t)
    per_item = data.get("national", {}).get("per_item", {})
    rows = []
    for item_id, title in titles.items():
        nat = per_item.get(item_id, {})
        sites_done = sum(p.get("per_item", {}).get(item_id, {}).get("completed", 0) for p in data["provinces"])
        sites_total = sum(p.get("per_item", {}).get(item_id, {}).get("total", 0) for p in data["provinces"])
        done, of = nat.get("provinces_done", 0), nat.get("provinces_total", len(data["provinces"]))
        rows.append({"id": item_id, "title": title, "done": done, "of": of,
                     "label": nat.get("label") or f"{done}/{of}", "share": done / of if of else 0.0,
                     "sites_done": sites_done, "sites_total": sites_total})
    return rows


@router.get("/", response_class=HTMLResponse)
def national_page(request: Request, ui: UI, source: Source, lang: Lang = DEFAULT_LANG) -> HTMLResponse:
    """The table a readiness meeting reads: N/34 provinces per item, then every province."""
    page = Page(ui, request, lang)
    data = source.provinces() if source is not None else None
    if source is None or data is None:
        return page.not_ready()
    history = source.history(None, HISTORY_DAYS)
    today = fmt.local_date(page.now)
    national = data.get("national", {})
    deadline = _deadline_view(data.get("deadline"), national.get("sites_completed", 0),
                              national.get("sites_total", 0), _points(history), today, page.t, lang)
    return page.render("national.html", data=data, items=_national_items(data, page.t),
                       item_titles=_item_titles(data, page.t), provinces=data.get("provinces", []),
                       deadline=deadline, chart=_chart(history, today, page.t),
                       fleet=getattr(source, "fleet", lambda: None)(), province_names=_province_names(data))


# -- province -------------------------------------------------------------------------


def _filter_communes(communes: list[dict[str, Any]], state: str | None, q: str | None,
                     item: str | None) -> list[dict[str, Any]]:
    needle = fmt.fold(q.strip()) if q else ""
    out = []
    for c in communes:
        if state and c.get("state") != state:
            continue
        if item and not any(f.get("item") == item for f in c.get("failing") or []):
            continue
        if needle and needle not in fmt.fold(f"{c.get('name', '')} {c.get('commune', '')} {c['site']}"):
            continue
        out.append(c)
    out.sort(key=lambda c: (STATE_ORDER.get(c.get("state", ""), 3), fmt.fold(c.get("name") or c["site"])))
    return out


@router.get("/p/{slug}", response_class=HTMLResponse)
def province_page(request: Request, ui: UI, source: Source, slug: str, lang: Lang = DEFAULT_LANG,
                  state: Annotated[str | None, Query(pattern="^(completed|not_completed|unknown)?$")] = None,
                  q: Annotated[str | None, Query(max_length=100)] = None,
                  item: Annotated[str | None, Query(max_length=100)] = None,
                  page_no: Annotated[int, Query(alias="page", ge=1, le=10_000)] = 1) -> HTMLResponse:
    """One province: per-item counts, its burn-up, and its communes with their failing reasons."""
    page = Page(ui, request, lang)
    national = source.provinces() if source is not None else None
    if source is None or national is None:
        return page.not_ready()
    province = source.province(slug)
    if province is None:
        return page.render("not_found.html", 404, message=page.t("not_found_province", slug=slug))
    history = source.history(slug, HISTORY_DAYS)
    today = fmt.local_date(page.now)
    communes = _filter_communes(province.get("communes", []), state or None, q, item or None)
    pages = max(1, math.ceil(len(communes) / PAGE_SIZE))
    page_no = min(page_no, pages)
    start = (page_no - 1) * PAGE_SIZE
    shown = communes[start:start + PAGE_SIZE]
    deadline = _deadline_view(national.get("deadline"), province.get("completed", 0), province.get("total", 0),
                              _points(history), today, page.t, lang)
    return page.render("province.html", province=province, item_titles=_item_titles(national, page.t),
                       communes=shown, matched=len(communes), first=start + 1 if shown else 0,
                       last=start + len(shown), page_no=page_no, pages=pages,
                       filters={"state": state or "", "q": q or "", "item": item or ""},
                       deadline=deadline, chart=_chart(history, today, page.t))


# -- commune ----------------------------------------------------------------------------


def _criteria_by_item(verdict: dict[str, Any], titles: dict[str, str]) -> list[dict[str, Any]]:
    """Criteria grouped under their readiness item, items in the configured order."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for crit in verdict.get("criteria", []):
        groups.setdefault(crit.get("item", ""), []).append(crit)
    order = list(titles) + [i for i in groups if i not in titles]
    return [{"id": i, "title": titles.get(i, i), "state": verdict.get("items", {}).get(i, "unknown"),
             "criteria": groups[i]} for i in order if i in groups]


@router.get("/s/{site}", response_class=HTMLResponse)
def site_page(request: Request, ui: UI, source: Source, site: str, lang: Lang = DEFAULT_LANG) -> HTMLResponse:
    """One commune: every criterion with met or not, value vs threshold, window and evidence time."""
    page = Page(ui, request, lang)
    national = source.provinces() if source is not None else None
    if source is None or national is None:
        return page.not_ready()
    verdict = source.verdict(site)
    if verdict is None:
        return page.render("not_found.html", 404, message=page.t("not_found_site", site=site))
    titles = _item_titles(national, page.t)
    return page.render("site.html", v=verdict, groups=_criteria_by_item(verdict, titles),
                       province_name=_province_names(national).get(verdict.get("province", ""),
                                                                    verdict.get("province", "")),
                       item_titles=titles)


# -- help -------------------------------------------------------------------------------


@router.get("/help/alerts", response_class=HTMLResponse)
def alerts_help(request: Request, ui: UI, lang: Lang = DEFAULT_LANG) -> HTMLResponse:
    """The runbook the alerts link to (``runbook_url``)."""
    page = Page(ui, request, lang)
    return page.render("alerts_help.html", rules=[*RULES.values(), UPSTREAM])
