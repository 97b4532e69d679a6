"""``/p/{slug}/fleet``: a province's agents for its operators (the fleet view, as a page).

The same rows as ``commune-collector fleet`` and ``GET /api/v1/fleet``
(``fleet.view.fleet_rows``): per commune the agent version, desired vs
applied config (drift, refusals), the last report, the spool backlog and
drops, when it enrolled. Read from the store, not the judge: it works before
the judge's first pass.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from commune_collector.access.deps import ViewerDep
from commune_collector.fleet.service import fleet_of
from commune_collector.fleet.view import FleetRow, fleet_rows, province_counts
from commune_collector.provinces import provinces
from commune_collector.web.routes import UI, Lang, Page

router = APIRouter(include_in_schema=False)


def _config_state(row: FleetRow) -> str:
    if row.config_error:
        return "error"
    if row.applied_config is None:
        return "none"
    return "ok" if row.on_desired else "drift"


@router.get("/p/{slug}/fleet", response_class=HTMLResponse)
def fleet_page(request: Request, ui: UI, viewer: ViewerDep, slug: str, lang: Lang = None) -> HTMLResponse:
    """The province's agents, worst first: refusing a config, drifting, silent, then the rest."""
    page = Page(ui, request, lang)
    province = provinces().get(slug)
    if province is None or not viewer.may_read_province(slug):  # out of scope reads as absent
        return page.render("not_found.html", 404, message=page.t("not_found_province", slug=slug))
    state = getattr(request.app.state, "collector", None)
    if state is None or getattr(state, "store", None) is None:
        return page.not_ready()
    fleet = fleet_of(state)
    rows = fleet_rows(state.store, fleet.db, fleet.profiles, page.now, slug, fleet.settings.live_within,
                      fleet.settings.duplicate_window)
    order = {"error": 0, "drift": 1, "none": 2, "ok": 3}
    rows.sort(key=lambda r: (order[_config_state(r)], r.reporting, r.name))
    counts = province_counts(rows).get(slug, {"sites": 0})
    return page.render("fleet.html", province=province, rows=rows, counts=counts, config_state=_config_state)
