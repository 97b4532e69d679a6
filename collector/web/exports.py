"""Spreadsheet exports for the meeting, from the status page: the same tables as ``commune-collector report``.

``/export/national.{csv,xlsx}``: the readiness table (counts only: every
operator). ``/export/p/{slug}.{csv,xlsx}``: one province's communes with
their failing criteria and why (an operator of another province gets 404).
Rows and cells come from ``collector.report``, so both exports stay one.
"""

from __future__ import annotations

import io
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response

from commune_collector.access.deps import ViewerDep, require_province
from commune_collector.problems import Problem
from commune_collector.web.routes import Source

router = APIRouter(include_in_schema=False)
SLUG = r"^[a-z0-9][a-z0-9-]{0,62}$"
Format = Literal["csv", "xlsx"]
ExportLang = Annotated[Literal["vi", "en"], Query(description="language of titles and headers")]
MEDIA = {"csv": "text/csv; charset=utf-8",
         "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}


def _render(docs: dict, province: str | None, fmt: Format, lang: str, filename: str) -> Response:
    from commune_collector.export import produce

    if fmt == "xlsx":
        buffer = io.BytesIO()
        produce(docs, province, fmt, lang, io.StringIO(), buffer)  # type: ignore[arg-type]
        body = buffer.getvalue()
    else:
        text = io.StringIO()
        produce(docs, province, fmt, lang, text, None)
        body = ("\ufeff" + text.getvalue()).encode("utf-8")  # the BOM makes spreadsheets read UTF-8
    return Response(body, media_type=MEDIA[fmt], headers={
        "Content-Disposition": f'attachment; filename="{filename}.{fmt}"', "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff"})


def _national(source: Source) -> dict:
    data = source.provinces() if source is not None else None
    if data is None:
        raise Problem(503, "Service Unavailable", "the judge has not finished its first pass yet",
                      headers={"Retry-After": "30"})
    return data


@router.get("/export/national.{fmt}")
def export_national(source: Source, viewer: ViewerDep, fmt: Format, lang: ExportLang = "vi") -> Response:
    """The readiness table: item, provinces done, communes completed."""
    return _render({"provinces": _national(source), "province": None}, None, fmt, lang, "commune-monitor-national")


@router.get("/export/p/{slug}.{fmt}")
def export_province(source: Source, viewer: ViewerDep, slug: Annotated[str, Path(pattern=SLUG)], fmt: Format,
                    lang: ExportLang = "vi") -> Response:
    """One province's communes, state, since when, failing criteria and why."""
    national = _national(source)
    require_province(viewer, slug, f"no province {slug!r}")
    detail = source.province(slug) if source is not None else None
    if detail is None:
        raise Problem(404, "Not Found", f"no province {slug!r}")
    return _render({"provinces": national, "province": detail}, slug, fmt, lang, f"commune-monitor-{slug}")
