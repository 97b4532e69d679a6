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

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader

from commune_collector import l10n
from commune_collector.access.deps import ViewerDep
from commune_collector.alerting.rules import MEMBER, RULES, UPSTREAM
from commune_collector.judge.status import STATUS_NAMES, WORST_FIRST
from commune_collector.reasons import render_any, transition_text
from commune_collector.web import fmt
from commune_collector.web.chart import ChartLabels, Point, burnup_svg
from commune_collector.web.clock import site_clock
from commune_collector.web.i18n import DEFAULT_LANG, LANGS, Translator, load_translators
from commune_collector.web.source import JudgeSource, VerdictSource

HERE = Path(__file__).parent
PAGE_SIZE = 50
HISTORY_DAYS = 35
STATE_ORDER = {"not_completed": 0, "unknown": 1, "completed": 2}
STATUS_ORDER = {name: n for n, name in enumerate(WORST_FIRST)}
REFRESH_SECONDS = 60  # national and province pages reload themselves (meta refresh, no script)
LANG_COOKIE = "lang"
LANG_COOKIE_AGE = 365 * 86400
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "script-src 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)
Lang = Annotated[str | None, Query(pattern="^(vi|en)$", description="page language (remembered in a cookie)")]


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


def _reason_text(row: Any, lang: str) -> str:
    """A criterion's or failing row's reason in ``lang``, from its code (legacy text as it is)."""
    if isinstance(row, dict) and row.get("reason_code"):
        return render_any({"code": row["reason_code"], "params": row.get("reason_params")}, lang)
    return render_any(row.get("reason") if isinstance(row, dict) else row, lang)


def choose_lang(request: Request, asked: str | None) -> str:
    """``?lang=``, else the remembered choice (cookie), else Accept-Language, else Vietnamese."""
    if asked in LANGS:
        return asked
    remembered = request.cookies.get(LANG_COOKIE)
    if remembered in LANGS:
        return remembered
    return l10n.pick_lang(request.headers.get("accept-language"), DEFAULT_LANG)


class Page:
    """Renders one template with the helpers every page uses (t, url, lang switch, numbers, reasons)."""

    def __init__(self, ui: WebUI, request: Request, asked: str | None):
        self.ui, self.request, self.asked = ui, request, asked
        self.lang = lang = choose_lang(request, asked)
        self.t = ui.translators[lang]
        self.now = time.time()

    def url(self, path: str, **params: Any) -> str:
        query = {k: v for k, v in params.items() if v not in (None, "") and not (k == "page" and v == 1)}
        if self.lang != DEFAULT_LANG:
            query["lang"] = self.lang
        return f"{path}?{urlencode(query)}" if query else path

    def switch_url(self) -> str:
        """The other language, named explicitly so the choice is remembered (cookie) when followed."""
        other = next(lang for lang in LANGS if lang != self.lang)
        params = dict(self.request.query_params)
        params["lang"] = other
        return f"{self.request.url.path}?{urlencode(params)}"

    def helpers(self) -> dict[str, Any]:
        lang = self.lang
        return {"n": lambda v, d=0: l10n.number(v or 0, lang, d), "pct": lambda s: l10n.percent(s, lang),
                "share": lambda part, whole: l10n.percent(part / whole, lang) if whole else "–",
                "when": lambda ts: l10n.local_time(ts, lang), "zone": l10n.ZONE_NAME[lang],
                "day": lambda ts: l10n.local_date(ts, lang), "dur": lambda s: l10n.duration(max(s, 0), lang), "age": lambda s: l10n.age(s, lang),
                "q": lambda v, unit: l10n.quantity(v, unit, lang),
                "reason": lambda r: _reason_text(r, lang),
                "statuses": STATUS_NAMES, "worst_first": WORST_FIRST}

    def render(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = self.ui.env.get_template(template).render(
            t=self.t, lang=self.lang, url=self.url, switch_url=self.switch_url(), now=self.now,
            static=f"/static/style.css?v={self.ui.static_version}", **self.helpers(), **context)
        response = HTMLResponse(html, status_code=status, headers={**SECURITY_HEADERS,
                                                                     "Vary": "Accept-Language, Cookie",
                                                                     "Content-Language": self.lang})
        if self.asked in LANGS and self.request.cookies.get(LANG_COOKIE) != self.asked:
            response.set_cookie(LANG_COOKIE, self.asked, max_age=LANG_COOKIE_AGE, samesite="lax", httponly=True)
        return response

    def not_ready(self) -> HTMLResponse:
        """Before the judge's first pass: say so (503) rather than show zeros that look like verdicts."""
        return self.render("not_found.html", 503, title=self.t("no_data_title"), message=self.t("no_data_text"))


def _item_titles(data: dict[str, Any], t: Translator) -> dict[str, str]:
    return {item["id"]: t.pick(item.get("title"), item["id"]) for item in data.get("items", [])}


def _province_names(data: dict[str, Any]) -> dict[str, str]:
    return {p["slug"]: p.get("name") or p["slug"] for p in data.get("provinces", [])}


# -- target, deadline and history ----------------------------------------------------


def _points(history: dict[str, Any]) -> list[Point]:
    return [Point(date.fromisoformat(d["date"]), int(d["completed"]), int(d["total"]))
            for d in history.get("series", [])]


def _deadline_view(data: dict[str, Any], completed: int, total: int, points: list[Point],
                   today: date, t: Translator, lang: str) -> dict[str, Any]:
    """Progress, and the target: a deadline counts days left and the pace needed; a milestone is only a date."""
    view: dict[str, Any] = {"completed": completed, "total": total,
                            "percent": l10n.percent(completed / total, lang) if total else "–",
                            "share": completed / total if total else 0.0,
                            "progress": t("communes_completed", completed=l10n.number(completed, lang),
                                          total=l10n.number(total, lang))}
    target = data.get("target") or ({"date": data["deadline"], "kind": "deadline"} if data.get("deadline") else None)
    remaining = total - completed
    if target:
        day = date.fromisoformat(target["date"])
        view.update(date=_date_text(day, lang), kind=target["kind"], meaning=t.pick(target.get("title"), ""))
    if target and target["kind"] == "deadline":
        days = (day - today).days
        view["days"] = (t("days_left", days=l10n.number(days, lang)) if days > 1 else t("day_left") if days == 1
                        else t("deadline_today") if days == 0 else t("days_over", days=l10n.number(-days, lang)))
        view["late"] = days < 0 and remaining > 0
        if remaining <= 0:
            view["pace"] = t("pace_done")
        elif days > 0:
            view["pace"] = t("pace_needed", rate=l10n.number(math.ceil(remaining / days), lang))
    elif target and day > today:
        view["days"] = t("milestone_in", days=l10n.number((day - today).days, lang))
    recent = [p for p in points if (today - p.day).days <= 7]
    if len(recent) >= 2 and remaining > 0:
        span = (recent[-1].day - recent[0].day).days or 1
        rate = (recent[-1].completed - recent[0].completed) / span
        view["recent"] = t("pace_recent", rate=l10n.number(rate, lang, 1))
    return view


def _date_text(day: date, lang: str) -> str:
    return day.strftime("%d/%m/%Y") if lang == "vi" else day.isoformat()


def _chart(history: dict[str, Any], today: date, t: Translator, lang: str) -> dict[str, Any]:
    points = _points(history)
    deadline = history.get("deadline")
    if not points:
        return {"svg": "", "points": []}
    labels = ChartLabels(t("history_chart_label", first=_date_text(points[0].day, lang),
                           last=_date_text(points[-1].day, lang)),
                         t("chart_completed"), t("chart_total"), t("chart_needed"), t("chart_deadline"),
                         t("chart_today"), "." if lang == "vi" else ",")
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
                     "sites_done": sites_done, "sites_total": sites_total,
                     "counts": nat.get("status_counts") or {}})
    return rows


def _worst_first(provinces: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Provinces with communes least completed first; those without communes last."""
    def key(p: dict[str, Any]) -> tuple:
        total = p.get("total", 0)
        share = p.get("completed", 0) / total if total else 2.0
        return (share, -p.get("not_completed", 0), fmt.fold(p.get("name") or p["slug"]))
    return sorted(provinces, key=key)


def _failing_groups(rows: list[dict[str, Any]], names: dict[str, str], t: Translator, lang: str,
                    crit_titles: dict[str, str]) -> list[dict[str, Any]]:
    """Communes failing now, by province (most failing first), then by the criterion that fails."""
    by_province: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for row in rows:
        for f in row.get("failing") or [{"id": "", "item": ""}]:
            if f.get("met") is False or not f.get("id"):
                by_province.setdefault(row["province"], {}).setdefault(f.get("id", ""), []).append(row)
    out = []
    for slug, groups in sorted(by_province.items(), key=lambda kv: -len({r["site"] for g in kv[1].values()
                                                                          for r in g})):
        out.append({"slug": slug, "name": names.get(slug, slug),
                    "count": len({r["site"] for g in groups.values() for r in g}),
                    "groups": [{"criterion": cid, "title": crit_titles.get(cid) or cid,
                                "communes": sorted(members, key=lambda r: r["since"])}
                               for cid, members in sorted(groups.items(), key=lambda kv: -len(kv[1]))]})
    return out


@router.get("/", response_class=HTMLResponse)
def national_page(request: Request, ui: UI, source: Source, viewer: ViewerDep, lang: Lang = None) -> HTMLResponse:
    """What fails now and where: counts by status, provinces worst first, failing communes, regressions."""
    page = Page(ui, request, lang)
    data = source.provinces() if source is not None else None
    if source is None or data is None:
        return page.not_ready()
    history = source.history(None, HISTORY_DAYS)
    today = fmt.local_date(page.now)
    national = data.get("national", {})
    deadline = _deadline_view(data, national.get("sites_completed", 0), national.get("sites_total", 0),
                              _points(history), today, page.t, page.lang)
    names = _province_names(data)
    failing = source.failing_now() if hasattr(source, "failing_now") else []
    regressions = source.regressions_since(page.now - 86400) if hasattr(source, "regressions_since") else []
    crit_titles = {f["id"]: page.t.pick(f.get("title"), f["id"]) for row in failing for f in row.get("failing", [])}
    return page.render("national.html", data=data, items=_national_items(data, page.t),
                       item_titles=_item_titles(data, page.t), provinces=_worst_first(data.get("provinces", [])),
                       counts=national.get("status_counts") or {}, refresh=REFRESH_SECONDS,
                       failing=_failing_groups(failing, names, page.t, page.lang, crit_titles),
                       failing_total=len(failing), regressions=regressions, names=names, crit_titles=crit_titles,
                       deadline=deadline, chart=_chart(history, today, page.t, page.lang),
                       fleet=getattr(source, "fleet", lambda: None)(), province_names=_province_names(data),
                       why_changed=lambda r: transition_text(r, page.lang, crit_titles))


# -- province -------------------------------------------------------------------------


def _filter_communes(communes: list[dict[str, Any]], state: str | None, q: str | None,
                     item: str | None, status: str | None = None) -> list[dict[str, Any]]:
    needle = fmt.fold(q.strip()) if q else ""
    out = []
    for c in communes:
        if state and c.get("state") != state:
            continue
        if status and c.get("status") != status:
            continue
        if item and not any(f.get("item") == item for f in c.get("failing") or []):
            continue
        if needle and needle not in fmt.fold(f"{c.get('name', '')} {c.get('commune', '')} {c['site']}"):
            continue
        out.append(c)
    out.sort(key=lambda c: (STATUS_ORDER.get(c.get("status", ""), STATE_ORDER.get(c.get("state", ""), 3)),
                            fmt.fold(c.get("name") or c["site"])))
    return out


@router.get("/p/{slug}", response_class=HTMLResponse)
def province_page(request: Request, ui: UI, source: Source, viewer: ViewerDep, slug: str, lang: Lang = None,
                  state: Annotated[str | None, Query(pattern="^(completed|not_completed|unknown)?$")] = None,
                  status: Annotated[str | None, Query(pattern="^(" + "|".join(STATUS_NAMES) + ")?$")] = None,
                  q: Annotated[str | None, Query(max_length=100)] = None,
                  item: Annotated[str | None, Query(max_length=100)] = None,
                  page_no: Annotated[int, Query(alias="page", ge=1, le=10_000)] = 1) -> HTMLResponse:
    """One province: per-item counts, its burn-up, and its communes with their failing reasons."""
    page = Page(ui, request, lang)
    national = source.provinces() if source is not None else None
    if source is None or national is None:
        return page.not_ready()
    province = source.province(slug) if viewer.may_read_province(slug) else None  # out of scope reads as absent
    if province is None:
        return page.render("not_found.html", 404, message=page.t("not_found_province", slug=slug))
    history = source.history(slug, HISTORY_DAYS)
    today = fmt.local_date(page.now)
    communes = _filter_communes(province.get("communes", []), state or None, q, item or None, status or None)
    pages = max(1, math.ceil(len(communes) / PAGE_SIZE))
    page_no = min(page_no, pages)
    start = (page_no - 1) * PAGE_SIZE
    shown = communes[start:start + PAGE_SIZE]
    deadline = _deadline_view(national, province.get("completed", 0), province.get("total", 0),
                              _points(history), today, page.t, page.lang)
    return page.render("province.html", province=province, item_titles=_item_titles(national, page.t),
                       communes=shown, matched=len(communes), first=start + 1 if shown else 0,
                       last=start + len(shown), page_no=page_no, pages=pages, refresh=REFRESH_SECONDS,
                       counts=province.get("status_counts") or {},
                       filters={"state": state or "", "status": status or "", "q": q or "", "item": item or ""},
                       deadline=deadline, chart=_chart(history, today, page.t, page.lang))


# -- commune ----------------------------------------------------------------------------


def _criteria_by_item(verdict: dict[str, Any], titles: dict[str, str]) -> list[dict[str, Any]]:
    """Criteria grouped under their readiness item, items in the configured order."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for crit in verdict.get("criteria", []):
        groups.setdefault(crit.get("item", ""), []).append(crit)
    order = list(titles) + [i for i in groups if i not in titles]
    return [{"id": i, "title": titles.get(i, i), "state": verdict.get("items", {}).get(i, "unknown"),
             "status": (verdict.get("item_status") or {}).get(i), "criteria": groups[i]}
            for i in order if i in groups]


@router.get("/s/{site}", response_class=HTMLResponse)
def site_page(request: Request, ui: UI, source: Source, viewer: ViewerDep, site: str, lang: Lang = None) -> HTMLResponse:
    """One commune: every criterion with met or not, value vs threshold, window and evidence time."""
    page = Page(ui, request, lang)
    national = source.provinces() if source is not None else None
    if source is None or national is None:
        return page.not_ready()
    verdict = source.verdict(site)
    if verdict is None or not viewer.may_read_province(verdict.get("province")):
        return page.render("not_found.html", 404, message=page.t("not_found_site", site=site))
    titles = _item_titles(national, page.t)
    crit_titles = {c["id"]: page.t.pick(c.get("title"), c["id"]) for c in verdict.get("criteria", [])}
    return page.render("site.html", v=verdict, groups=_criteria_by_item(verdict, titles), clock=site_clock(request, site),
                       province_name=_province_names(national).get(verdict.get("province", ""),
                                                                    verdict.get("province", "")),
                       item_titles=titles, crit_titles=crit_titles,
                       why_changed=lambda r: transition_text(r, page.lang, crit_titles))


# -- help -------------------------------------------------------------------------------


@router.get("/help/alerts", response_class=HTMLResponse)
def alerts_help(request: Request, ui: UI, viewer: ViewerDep, lang: Lang = None) -> HTMLResponse:
    """The runbook the alerts link to (``runbook_url``)."""
    page = Page(ui, request, lang)
    return page.render("alerts_help.html", rules=[*RULES.values(), UPSTREAM, MEMBER])
