"""``commune-collector report``: the readiness table for a meeting, or one province's communes and why.

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

import argparse
import csv
import datetime as dt
import io
import json
import sys
from pathlib import Path
from typing import Any, TextIO

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
    import httpx

    base = url.rstrip("/")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with httpx.Client(timeout=timeout, headers=headers) as client:
            provinces = _get(client, f"{base}/api/v1/provinces")
            detail = _get(client, f"{base}/api/v1/provinces/{province}") if province else None
    except httpx.HTTPError as exc:
        raise ReportError(f"cannot reach the collector at {base}: {exc}") from None
    return {"provinces": provinces, "province": detail}


def _get(client: Any, url: str) -> dict:
    response = client.get(url)
    if response.status_code != 200:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise ReportError(f"GET {url}: {response.status_code} {detail}")
    return response.json()


def documents_from_store(settings: Any, province: str | None, progress: TextIO | None = sys.stderr) -> dict:
    """Judge once, read-only, from the configured store and return the API documents."""
    from commune_collector.judge.api import province_detail
    from commune_collector.judge.engine import Judge
    from commune_collector.judge.persist import ReadOnlyVerdicts
    from commune_collector.store import open_store
    from commune_collector.store.judge_evidence import StoreEvidence
    from commune_collector.store.verdicts import SqlVerdictStore

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
            raise ReportError(f"no province {province!r}")
        return {"provinces": snapshot.rollup.to_json(), "province": detail}
    finally:
        store.close()


class ReportError(Exception):
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
    csv.writer(out, lineterminator="\n").writerows(rows)


def write_xlsx(sheets: list[tuple[str, list[list[str]]]], path: Path) -> None:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    book = Workbook()
    book.remove(book.active)
    for title, rows in sheets:
        sheet = book.create_sheet(title[:31])
        for row in rows:
            sheet.append(row)
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


# -- the subcommand -----------------------------------------------------------------------


def cmd_report(args: argparse.Namespace) -> int:
    from commune_collector.cli import settings_from

    fmt = args.format
    if fmt == "xlsx" and args.output is None:
        print("error: --format xlsx writes a file: give --output FILE.xlsx", file=sys.stderr)
        return 2
    try:
        if args.url:
            docs = documents_from_url(args.url, args.province, token=_operator_token(args))
        else:
            docs = documents_from_store(settings_from(args), args.province)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.output is not None and fmt != "xlsx":
        with open(args.output, "w", encoding="utf-8", newline="") as out:
            produce(docs, args.province, fmt, args.lang, out, args.output)
    else:
        buffer = io.StringIO()
        produce(docs, args.province, fmt, args.lang, buffer, args.output)
        sys.stdout.write(buffer.getvalue())
    if args.output is not None:
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


def _operator_token(args: argparse.Namespace) -> str | None:
    """--token-file, else $COMMUNE_OPERATOR_TOKEN (never a command-line argument: ps would show it)."""
    import os

    if args.token_file:
        try:
            return Path(args.token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ReportError(f"--token-file {args.token_file}: {exc.strerror}") from None
    return os.environ.get("COMMUNE_OPERATOR_TOKEN") or None


def cmd_check_criteria(args: argparse.Namespace) -> int:
    from commune_collector.judge.criteria import load_criteria

    config = load_criteria(args.file)  # ConfigError -> located messages, exit 1 (collector.cli.main)
    print(f"{args.file}: ok, {config.describe()}")
    return 0


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    """Register ``report`` and ``check-criteria`` on the collector's CLI."""
    from commune_collector.cli import add_config_arg

    p = sub.add_parser("report", help="the readiness table (national, or one province's communes and why)",
                       description="The readiness table for a meeting, or one province's communes and why.\n\n"
                                   + __doc__.split("\n\n")[2].replace("``", ""),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arg(p)
    p.add_argument("--province", metavar="SLUG", help="one province: a row per commune with its failing reasons")
    p.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")
    p.add_argument("--output", "-o", type=Path, metavar="FILE", help="write to FILE (required for xlsx)")
    p.add_argument("--lang", choices=("en", "vi"), default="en", help="language of titles and headers")
    p.add_argument("--url", metavar="URL", help="ask a running collector (http://host:port) instead of the store")
    p.add_argument("--token-file", metavar="FILE", help="with --url: a file holding an operator token "
                                                        "(default: $COMMUNE_OPERATOR_TOKEN)")
    p.set_defaults(func=cmd_report)
    c = sub.add_parser("check-criteria", help="validate a criteria file (exit 1 with file:line messages)",
                       description="Load a criteria YAML and report every problem with its file, line and field.")
    c.add_argument("file", type=Path, help="criteria YAML, e.g. config/criteria.yaml")
    c.set_defaults(func=cmd_check_criteria)
