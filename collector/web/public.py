"""The optional public view (``access.public_view``, off by default): counts and the burn-up, nothing else.

``/public`` shows the national table (provinces done per item) and every
province's completed/total; ``/public/p/{slug}`` one province's counts per
item; both with their burn-up; ``/public/summary.json`` the national counts.
No commune, no site id, no reason: those stay behind the operators' gate.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, JSONResponse

from commune_collector.web import fmt
from commune_collector.web.routes import (
    HISTORY_DAYS,
    UI,
    Lang,
    Page,
    Source,
    _chart,
    _item_titles,
    _national_items,
)

router = APIRouter(include_in_schema=False)
SLUG = r"^[a-z0-9][a-z0-9-]{0,62}$"
WORDS = {
    "vi": {"note": "Số liệu công khai: chỉ có số đếm, không có chi tiết từng xã.", "count_head": "Hoàn thành",
           "operators": "Cán bộ vận hành xem chi tiết từng xã sau khi đăng nhập."},
    "en": {"note": "Public figures: counts only, no commune's details.", "count_head": "Done",
           "operators": "Operators see each commune's details after signing in."},
}


def _enabled(request: Request) -> bool:
    state = getattr(request.app.state, "collector", None)
    return bool(state is not None and state.settings.access.public_view)


def _closed(page: Page) -> HTMLResponse:
    return page.render("not_found.html", 404, message=page.t("not_found_title"))


@router.get("/public", response_class=HTMLResponse)
def public_national(request: Request, ui: UI, source: Source, lang: Lang = None) -> HTMLResponse:
    page = Page(ui, request, lang)
    if not _enabled(request):
        return _closed(page)
    data = source.provinces() if source is not None else None
    if source is None or data is None:
        return page.not_ready()
    items = [{"id": r["id"], "title": r["title"], "label": r["label"], "share": r["share"]}
             for r in _national_items(data, page.t)]
    return page.render("public.html", heading=page.t("site_title"), words=WORDS[page.lang], items=items,
                       provinces=data.get("provinces", []), evaluated_at=data.get("evaluated_at"),
                       chart=_chart(source.history(None, HISTORY_DAYS), fmt.local_date(page.now), page.t, page.lang))


@router.get("/public/p/{slug}", response_class=HTMLResponse)
def public_province(request: Request, ui: UI, source: Source, slug: Annotated[str, Path(pattern=SLUG)],
                    lang: Lang = None) -> HTMLResponse:
    page = Page(ui, request, lang)
    if not _enabled(request):
        return _closed(page)
    data = source.provinces() if source is not None else None
    if source is None or data is None:
        return page.not_ready()
    province = next((p for p in data.get("provinces", []) if p["slug"] == slug), None)
    if province is None:
        return page.render("not_found.html", 404, message=page.t("not_found_province", slug=slug))
    titles = _item_titles(data, page.t)
    items = []
    for item_id, title in titles.items():
        counts = province.get("per_item", {}).get(item_id, {})
        done, total = counts.get("completed", 0), counts.get("total", 0)
        items.append({"id": item_id, "title": title, "label": f"{done}/{total}",
                      "share": done / total if total else 0.0})
    return page.render("public.html", heading=province.get("name") or slug, words=WORDS[page.lang], items=items,
                       provinces=[], evaluated_at=data.get("evaluated_at"),
                       chart=_chart(source.history(slug, HISTORY_DAYS), fmt.local_date(page.now), page.t, page.lang))


@router.get("/public/summary.json")
def public_summary(request: Request, source: Source) -> JSONResponse:
    data = source.provinces() if source is not None and _enabled(request) else None
    if data is None:
        return JSONResponse({"detail": "no public figures"}, status_code=404)
    return JSONResponse(public_counts(data))


def public_counts(data: dict[str, Any]) -> dict[str, Any]:
    """The national roll-up without anything but counts (it holds no site; this keeps it so if it grows)."""
    keep = ("slug", "name", "total", "completed", "not_completed", "unknown", "per_item")
    return {"evaluated_at": data.get("evaluated_at"), "deadline": data.get("deadline"), "items": data.get("items"),
            "national": data.get("national"),
            "provinces": [{k: p.get(k) for k in keep} for p in data.get("provinces", [])]}
