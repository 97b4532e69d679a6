"""The readiness tables as the weekly meeting's spreadsheet, and the same data as CSV for machines.

A sheet is typed cells, not text: counts are integers, shares are ratios
shown with a percent format, times are dates in Vietnam time with the zone
named in the header, so the spreadsheet can sum, sort and chart them. Every
sheet starts with an as-of line; headers and sheet names are in the chosen
language; with ``per_province`` each province gets its own sheet of communes.

CSV is for programs: one header row, numbers with a dot, shares as ratios,
times ISO 8601 with their +07:00 offset, and the as-of time in an ``as_of``
column of every row (a comment line would break CSV readers).

Text cells that a spreadsheet would run as a formula (starting with
``= + - @``, a tab or a carriage return) are written with a leading
apostrophe, so a commune name can never become a formula.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from commune_collector import l10n
from commune_collector.cells import neutral_text, set_cell
from commune_collector.reasons import criterion_line, pick, render_any

STATUSES = ("completed", "not_completed", "stabilising", "insufficient_evidence", "never_reported")
TEXT = {
    "vi": {"national": "Toàn quốc", "provinces": "Các tỉnh", "as_of": "Số liệu lúc {time}",
           "item": "Hạng mục", "provinces_done": "Số tỉnh hoàn thành", "provinces_total": "Tổng số tỉnh",
           "completed": "Số xã hoàn thành", "total": "Tổng số xã", "share": "Tỉ lệ hoàn thành",
           "overall": "Tất cả tiêu chí (tổng)", "province": "Tỉnh, thành phố", "site": "Mã điểm",
           "commune": "Xã, phường", "status": "Trạng thái", "since": "Từ lúc ({zone})",
           "completed_at": "Hoàn thành lúc dự kiến ({zone})", "failing": "Tiêu chí chưa đạt và lý do",
           "done": "hoàn thành", "never_reported_line": "chưa từng gửi báo cáo",
           "status_completed": "Hoàn thành", "status_not_completed": "Chưa hoàn thành",
           "status_stabilising": "Đang chờ ổn định", "status_insufficient_evidence": "Chưa đủ dữ liệu",
           "status_never_reported": "Chưa từng báo cáo", "completed_of_item": "Hoàn thành: {item}"},
    "en": {"national": "National", "provinces": "Provinces", "as_of": "As of {time}",
           "item": "Readiness item", "provinces_done": "Provinces done", "provinces_total": "Provinces",
           "completed": "Communes completed", "total": "Communes", "share": "Share completed",
           "overall": "All criteria (overall)", "province": "Province", "site": "Site",
           "commune": "Commune", "status": "Status", "since": "Since ({zone})",
           "completed_at": "Completed at if criteria keep holding ({zone})", "failing": "Failing criteria and why",
           "done": "done", "never_reported_line": "has never reported",
           "status_completed": "Completed", "status_not_completed": "Not completed",
           "status_stabilising": "Waiting out the stable period", "status_insufficient_evidence": "Insufficient evidence",
           "status_never_reported": "Never reported", "completed_of_item": "Completed: {item}"},
}
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_SHEET_NAME_BAD = re.compile(r"[\[\]:*?/\\]")


@dataclass(frozen=True)
class Share:
    """A ratio (0-1) shown as a percent."""

    value: float


@dataclass
class Sheet:
    title: str
    as_of: float
    header: list[str]
    rows: list[list[Any]] = field(default_factory=list)


# -- building the sheets ----------------------------------------------------------------------


def status_columns(lang: str) -> list[str]:
    return [TEXT[lang][f"status_{s}"] for s in STATUSES]


def national_sheet(doc: dict, lang: str) -> Sheet:
    """Per item: provinces done of 34, communes completed, their share and the communes by status."""
    t = TEXT[lang]
    national = doc["national"]
    sheet = Sheet(t["national"], doc["evaluated_at"], [t["item"], t["provinces_done"], t["provinces_total"],
                                                        t["completed"], t["total"], t["share"],
                                                        *status_columns(lang)])
    total = national["sites_total"]
    for item in doc["items"]:
        per = national["per_item"][item["id"]]
        completed = sum(p["per_item"][item["id"]]["completed"] for p in doc["provinces"])
        counts = per.get("status_counts") or {}
        sheet.rows.append([pick(item["title"], lang), per["provinces_done"], per["provinces_total"], completed,
                           total, Share(completed / total if total else 0.0),
                           *[counts.get(s, 0) for s in STATUSES]])
    counts = national.get("status_counts") or {}
    all_done = sum(1 for p in doc["provinces"] if p["total"] > 0 and p["completed"] == p["total"])
    sheet.rows.append([t["overall"], all_done, national["provinces_total"], national["sites_completed"], total,
                       Share(national["sites_completed"] / total if total else 0.0),
                       *[counts.get(s, 0) for s in STATUSES]])
    return sheet


def provinces_sheet(doc: dict, lang: str) -> Sheet:
    """Per province: communes, completed, share, by status, and completed per item."""
    t = TEXT[lang]
    items = [(i["id"], pick(i["title"], lang)) for i in doc["items"]]
    sheet = Sheet(t["provinces"], doc["evaluated_at"],
                  [t["province"], t["total"], t["completed"], t["share"], *status_columns(lang),
                   *[t["completed_of_item"].format(item=title) for _, title in items]])
    for p in doc["provinces"]:
        counts = p.get("status_counts") or {}
        sheet.rows.append([p["name"], p["total"], p["completed"], Share(p["completed"] / p["total"] if p["total"] else 0.0),
                           *[counts.get(s, 0) for s in STATUSES],
                           *[p["per_item"][item]["completed"] for item, _ in items]])
    return sheet


def communes_sheet(detail: dict, as_of: float, lang: str) -> Sheet:
    """One province's communes: status, since when, and the criteria they fail with the reason in words."""
    t = TEXT[lang]
    zone = l10n.ZONE_NAME[lang]
    sheet = Sheet(detail["name"], as_of, [t["site"], t["commune"], t["status"], t["since"].format(zone=zone),
                                          t["completed_at"].format(zone=zone), t["failing"]])
    for c in detail["communes"]:
        status = c.get("status") or {"unknown": "insufficient_evidence"}.get(c["state"], c["state"])
        if status == "never_reported":
            why = t["never_reported_line"]
        else:
            why = "; ".join(failing_line(f, lang) for f in c["failing"])
        sheet.rows.append([c["site"], c["commune"], t.get(f"status_{status}", status),
                           l10n.local_datetime(c["since"]),
                           l10n.local_datetime(c["completed_at"]) if c.get("completed_at") else None, why])
    return sheet


def failing_line(row: dict, lang: str) -> str:
    """``criterion: reason``, without naming the criterion twice."""
    return criterion_line(row, lang)


def failing_reason(row: dict, lang: str) -> str:
    if row.get("reason_code"):
        return render_any({"code": row["reason_code"], "params": row.get("reason_params")}, lang)
    return str(row.get("reason", ""))


def build(docs: dict, province: str | None, lang: str, per_province: bool = False) -> list[Sheet]:
    """The sheets of a report: national + provinces (+ one per province), or one province's communes."""
    national = docs["provinces"]
    if province:
        return [communes_sheet(docs["province"], national["evaluated_at"], lang)]
    sheets = [national_sheet(national, lang), provinces_sheet(national, lang)]
    if per_province:
        for detail in docs.get("details", []):
            sheets.append(communes_sheet(detail, national["evaluated_at"], lang))
    return sheets


# -- writing -------------------------------------------------------------------------------------


def safe_text(value: str) -> str:
    """A text cell that a spreadsheet will not run as a formula (``cells.neutral_text``: OWASP's quote)."""
    return neutral_text(value)


def text_of(cell: Any, lang: str) -> str:
    """A cell as a person reads it (the aligned table)."""
    if cell is None:
        return ""
    if isinstance(cell, Share):
        return l10n.percent(cell.value, lang)
    if isinstance(cell, datetime):
        return cell.strftime("%d/%m/%Y %H:%M" if lang == "vi" else "%Y-%m-%d %H:%M")
    if isinstance(cell, int | float) and not isinstance(cell, bool):
        return l10n.number(cell, lang)
    return str(cell)


def text_rows(sheet: Sheet, lang: str) -> list[list[str]]:
    return [sheet.header, *[[text_of(c, lang) for c in row] for row in sheet.rows]]


def as_of_line(sheet: Sheet, lang: str) -> str:
    return TEXT[lang]["as_of"].format(time=l10n.local_time(sheet.as_of, lang, zone=True))


def write_csv(sheet: Sheet, out: TextIO) -> None:
    """Header, then rows: plain numbers, shares as ratios, ISO 8601 times with offset, ``as_of`` last."""
    as_of = l10n.local_datetime(sheet.as_of).isoformat(timespec="seconds")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*sheet.header, "as_of"])
    for row in sheet.rows:
        writer.writerow([*(_csv_cell(c) for c in row), as_of])


def _csv_cell(cell: Any) -> Any:
    if cell is None:
        return ""
    if isinstance(cell, Share):
        return round(cell.value, 6)
    if isinstance(cell, datetime):
        return cell.isoformat(timespec="seconds")
    if isinstance(cell, str):
        return safe_text(cell)
    return cell


def sheet_name(title: str, taken: set[str]) -> str:
    """A valid, unique sheet name (31 characters, none of []:*?/\\)."""
    base = _SHEET_NAME_BAD.sub(" ", title).strip()[:31] or "Sheet"
    name, n = base, 2
    while name.casefold() in taken:
        suffix = f" ({n})"
        name, n = base[:31 - len(suffix)] + suffix, n + 1
    taken.add(name.casefold())
    return name


def write_xlsx(sheets: list[Sheet], path: Path, lang: str) -> None:
    """One worksheet per sheet: as-of line, bold header, typed cells with number formats, fitted widths."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    date_format = "dd/mm/yyyy hh:mm" if lang == "vi" else "yyyy-mm-dd hh:mm"
    book = Workbook()
    book.remove(book.active)
    taken: set[str] = set()
    for sheet in sheets:
        ws = book.create_sheet(sheet_name(sheet.title, taken))
        ws.append([as_of_line(sheet, lang)])
        ws["A1"].font = Font(italic=True)
        ws.append(sheet.header)
        for cell in ws[2]:
            cell.font = Font(bold=True)
        for row in sheet.rows:
            ws.append([_xlsx_value(c) for c in row])
            for cell, value in zip(ws[ws.max_row], row, strict=False):
                if isinstance(value, str):  # stored as text, never a formula, quote-prefixed where it matters
                    cell = set_cell(ws, cell.row, cell.column, value)
                cell.number_format = _xlsx_format(value, date_format)
        ws.freeze_panes = "A3"
        _fit_widths(ws, sheet, lang)
    book.save(path)


def _xlsx_value(cell: Any) -> Any:
    if isinstance(cell, Share):
        return cell.value
    if isinstance(cell, datetime):
        return cell.replace(tzinfo=None)  # spreadsheets hold no zone: the header names it
    if isinstance(cell, str):
        return cell  # set_cell writes it as text after the row is appended
    return cell


def _xlsx_format(cell: Any, date_format: str) -> str:
    if isinstance(cell, Share):
        return "0.0%"
    if isinstance(cell, datetime):
        return date_format
    if isinstance(cell, int) and not isinstance(cell, bool):
        return "#,##0"
    if isinstance(cell, float):
        return "#,##0.0##"
    return "General"


def _fit_widths(ws: Any, sheet: Sheet, lang: str) -> None:
    from openpyxl.utils import get_column_letter

    for n, header in enumerate(sheet.header, start=1):
        longest = max([len(header)] + [len(text_of(row[n - 1], lang)) for row in sheet.rows if n - 1 < len(row)])
        ws.column_dimensions[get_column_letter(n)].width = min(max(longest + 2, 10), 70)
