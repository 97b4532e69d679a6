"""The readiness export (``commune-collector report``): the table for a meeting, or one province's communes and why.

Without ``--province``: the national table as the readiness meetings read it
(readiness item | provinces done "29/34" | communes completed). With it: one
row per commune of that province, its state and the criteria it fails with
their reasons. Formats: an aligned table (default), CSV, JSON (the API's
documents) and XLSX (a sheet per table, for the spreadsheet the meeting
already uses).

Verdicts come from a running collector (``--url``) or, by default, from the
store itself: the judge runs one read-only pass over the evidence (nothing
is written), starting from the verdict states the collector persisted.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from commune_collector.cells import set_cell, write_csv
from commune_collector.judge.documents import province_detail
from commune_collector.judge.engine import Judge
from commune_collector.judge.persist import ReadOnlyVerdicts
from commune_collector.store import open_store
from commune_collector.store.judge_evidence import StoreEvidence
from commune_collector.store.verdicts import SqlVerdictStore

FORMATS = ("table", "csv", "json", "xlsx")
STATE_TEXT = {"en": {"completed": "completed", "not_completed": "not completed", "unknown": "unknown"},
              "vi": {"completed": "hoàn thành", "not_completed": "chưa hoàn thành", "unknown": "chưa rõ"}}
HEADERS = {
    "en": {"item": "readiness item", "provinces": "provinces done", "communes": "communes completed",
           "overall": "all criteria (overall)", "site": "site", "commune": "commune", "state": "state",
           "since": "since", "failing": "failing criteria and why"},
    "vi": {"item": "hạng mục", "provinces": "số tỉnh hoàn thành", "communes": "số xã hoàn thành",
           "overall": "tất cả tiêu chí (tổng)", "site": "mã điểm", "commune": "xã/phường", "state": "trạng thái",
           "since": "từ", "failing": "tiêu chí chưa đạt và lý do"},
}


# -- getting the documents ------------------------------------------------------------


def documents_from_url(url: str, province: str | None, timeout: float = 30.0, token: str | None = None) -> dict:
    """The API documents from a running collector, read with an operator's token (cut to its scope)."""
    import httpx  # start-up: only `report --url` talks HTTP; every other subcommand skips ~0.25 s and 29 MB

    base = url.rstrip("/")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with httpx.Client(timeout=timeout, headers=headers) as client:
            provinces = _get(client, f"{base}/api/v1/provinces")
            detail = _get(client, f"{base}/api/v1/provinces/{province}") if province else None
    except httpx.HTTPError as exc:
        raise ExportError(f"cannot reach the collector at {base}: {exc}") from None
    return {"provinces": provinces, "province": detail}


def _get(client: Any, url: str) -> dict:
    response = client.get(url)
    if response.status_code != 200:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise ExportError(f"GET {url}: {response.status_code} {detail}")
    return response.json()


def documents_from_store(settings: Any, province: str | None, progress: TextIO | None = sys.stderr) -> dict:
    """Judge once, read-only, from the configured store and return the API documents."""
    store = open_store(settings)
    try:
        store.migrate()
        if progress:
            print("judging the stored evidence (read-only)...", file=progress, flush=True)
        judge = Judge(settings.judge.criteria(), StoreEvidence(store, read_only=True),
                      ReadOnlyVerdicts(SqlVerdictStore.for_store(store)), timezone=settings.judge.timezone)
        try:
            snapshot = judge.run_pass()
        finally:
            judge.close()
        if progress:
            print(f"judged {len(snapshot.sites)} sites in {judge.last_stats.total_seconds:.1f}s",
                  file=progress, flush=True)
        detail = province_detail(snapshot, province) if province else None
        if province and detail is None:
            raise ExportError(f"no province {province!r}")
        return {"provinces": snapshot.rollup.to_json(), "province": detail}
    finally:
        store.close()


class ExportError(Exception):
    """The report cannot be made (unknown province, collector unreachable); the message says why."""


# -- rows -------------------------------------------------------------------------------


def national_rows(doc: dict, lang: str = "en") -> list[list[str]]:
    """item | provinces done | communes completed, the way the meetings count."""
    h = HEADERS[lang]
    rows = [[h["item"], h["provinces"], h["communes"]]]
    national = doc["national"]
    for item in doc["items"]:
        per = national["per_item"][item["id"]]
        completed = sum(p["per_item"][item["id"]]["completed"] for p in doc["provinces"])
        rows.append([item["title"][lang], per["label"], f"{completed}/{national['sites_total']}"])
    rows.append([h["overall"], f"{sum(1 for p in doc['provinces'] if _all_done(p))}/{national['provinces_total']}",
                 f"{national['sites_completed']}/{national['sites_total']}"])
    return rows


def _all_done(province: dict) -> bool:
    return province["total"] > 0 and province["completed"] == province["total"]


def province_table_rows(doc: dict, lang: str = "en") -> list[list[str]]:
    """Per province: communes completed per item (the XLSX's second sheet)."""
    items = [i["id"] for i in doc["items"]]
    titles = {i["id"]: i["title"][lang] for i in doc["items"]}
    rows = [["province", "communes", "completed", *[titles[i] for i in items]]]
    for p in doc["provinces"]:
        rows.append([p["name"], str(p["total"]), str(p["completed"]),
                     *[f"{p['per_item'][i]['completed']}/{p['total']}" + (" ✓" if p["per_item"][i]["done"] else "")
                       for i in items]])
    return rows


def commune_rows(detail: dict, lang: str = "en") -> list[list[str]]:
    h = HEADERS[lang]
    rows = [[h["site"], h["commune"], h["state"], h["since"], h["failing"]]]
    for c in detail["communes"]:
        since = dt.datetime.fromtimestamp(c["since"], dt.UTC).strftime("%Y-%m-%d %H:%M")
        failing = "; ".join(f"{f['id']}: {f['reason']}" for f in c["failing"])
        rows.append([c["site"], c["commune"], STATE_TEXT[lang][c["state"]], since, failing])
    return rows


# -- rendering --------------------------------------------------------------------------


def render_table(rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for n, row in enumerate(rows):
        cells = [cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)] + [row[-1]]
        out.write("  ".join(cells).rstrip() + "\n")
        if n == 0:
            out.write("  ".join("-" * w for w in widths) + "  " + "-" * len(row[-1]) + "\n")


def render_csv(rows: list[list[str]], out: TextIO) -> None:
    write_csv(rows, out)  # no cell a spreadsheet would run as a formula (commune names come from provinces)


def write_xlsx(sheets: list[tuple[str, list[list[str]]]], path: Path) -> None:
    # start-up: openpyxl costs ~0.7 s and 37 MB, paid only when an XLSX is written
    from openpyxl import Workbook
    from openpyxl.styles import Font

    book = Workbook()
    book.remove(book.active)
    for title, rows in sheets:
        sheet = book.create_sheet(title[:31])
        for r, row in enumerate(rows, start=1):
            for c, value in enumerate(row, start=1):
                set_cell(sheet, r, c, value)  # text stays text, numbers are numbers
        for cell in sheet[1]:
            cell.font = Font(bold=True)
        for column in sheet.columns:
            width = max(len(str(c.value or "")) for c in column)
            sheet.column_dimensions[column[0].column_letter].width = min(max(width + 2, 10), 80)
        sheet.freeze_panes = "A2"
    book.save(path)


def produce(docs: dict, province: str | None, fmt: str, lang: str, out: TextIO, output: Path | None) -> None:
    if fmt == "json":
        json.dump(docs["province"] if province else docs["provinces"], out, ensure_ascii=False, indent=2)
        out.write("\n")
        return
    rows = commune_rows(docs["province"], lang) if province else national_rows(docs["provinces"], lang)
    if fmt == "xlsx":
        assert output is not None
        sheets = [(docs["province"]["name"] if province else "national", rows)]
        if not province:
            sheets.append(("provinces", province_table_rows(docs["provinces"], lang)))
        write_xlsx(sheets, output)
        return
    (render_csv if fmt == "csv" else render_table)(rows, out)
