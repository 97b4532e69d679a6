"""``commune-collector report``: the readiness table for a meeting, or one province's communes and why.

Without ``--province``: the national table as the readiness meetings read it
(readiness item | provinces done of 34 | communes completed, and by status).
With it: one row per commune of that province, its status and the criteria it
fails with their reasons. Formats: an aligned table (default), CSV for
programs, JSON (the API's documents) and XLSX for the meeting (typed numbers,
shares and dates, an as-of line, a sheet per province on request); Vietnamese
by default (``--lang en``). The sheets are built in ``commune_collector.export``.

Verdicts come from a running collector (``--url``) or, by default, from the
store itself: the judge runs one read-only pass over the evidence (nothing
is written), starting from the verdict states the collector persisted.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from commune_collector import export

FORMATS = ("table", "csv", "json", "xlsx")


# -- getting the documents ------------------------------------------------------------


def documents_from_url(url: str, province: str | None, timeout: float = 30.0, per_province: bool = False) -> dict:
    """The API documents from a running collector (``per_province``: every province's communes too)."""
    import httpx

    base = url.rstrip("/")
    try:
        with httpx.Client(timeout=timeout) as client:
            provinces = _get(client, f"{base}/api/v1/provinces")
            detail = _get(client, f"{base}/api/v1/provinces/{province}") if province else None
            details = [_get(client, f"{base}/api/v1/provinces/{p['slug']}") for p in provinces["provinces"]
                       if p["total"]] if per_province and not province else []
    except httpx.HTTPError as exc:
        raise ReportError(f"cannot reach the collector at {base}: {exc}") from None
    return {"provinces": provinces, "province": detail, "details": details}


def _get(client: Any, url: str) -> dict:
    response = client.get(url)
    if response.status_code != 200:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise ReportError(f"GET {url}: {response.status_code} {detail}")
    return response.json()


def documents_from_store(settings: Any, province: str | None, progress: TextIO | None = sys.stderr,
                         per_province: bool = False) -> dict:
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
        details = [province_detail(snapshot, p.slug) for p in snapshot.rollup.provinces
                   if p.total] if per_province and not province else []
        return {"provinces": snapshot.rollup.to_json(), "province": detail, "details": details}
    finally:
        store.close()


class ReportError(Exception):
    """The report cannot be made (unknown province, collector unreachable); the message says why."""


# -- rendering --------------------------------------------------------------------------


def render_table(rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for n, row in enumerate(rows):
        cells = [cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)] + [row[-1]]
        out.write("  ".join(cells).rstrip() + "\n")
        if n == 0:
            out.write("  ".join("-" * w for w in widths) + "  " + "-" * len(row[-1]) + "\n")


def produce(docs: dict, province: str | None, fmt: str, lang: str, out: TextIO, output: Path | None,
            per_province: bool = False) -> None:
    if fmt == "json":
        json.dump(docs["province"] if province else docs["provinces"], out, ensure_ascii=False, indent=2)
        out.write("\n")
        return
    sheets = export.build(docs, province, lang, per_province)
    if fmt == "xlsx":
        assert output is not None
        export.write_xlsx(sheets, output, lang)
    elif fmt == "csv":
        export.write_csv(sheets[0], out)
    else:
        out.write(export.as_of_line(sheets[0], lang) + "\n\n")
        render_table(export.text_rows(sheets[0], lang), out)


# -- the subcommand -----------------------------------------------------------------------


def cmd_report(args: argparse.Namespace) -> int:
    from commune_collector.cli import settings_from

    fmt = args.format
    if fmt == "xlsx" and args.output is None:
        print("error: --format xlsx writes a file: give --output FILE.xlsx", file=sys.stderr)
        return 2
    try:
        if args.url:
            docs = documents_from_url(args.url, args.province, per_province=args.sheet_per_province)
        else:
            docs = documents_from_store(settings_from(args), args.province, per_province=args.sheet_per_province)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.output is not None and fmt != "xlsx":
        with open(args.output, "w", encoding="utf-8", newline="") as out:
            produce(docs, args.province, fmt, args.lang, out, args.output, args.sheet_per_province)
    else:
        buffer = io.StringIO()
        produce(docs, args.province, fmt, args.lang, buffer, args.output, args.sheet_per_province)
        sys.stdout.write(buffer.getvalue())
    if args.output is not None:
        print(f"wrote {args.output}", file=sys.stderr)
    return 0


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
    p.add_argument("--lang", choices=("vi", "en"), default="vi",
                   help="language of sheet names, headers, statuses and reasons (default: vi)")
    p.add_argument("--sheet-per-province", action="store_true",
                   help="xlsx: add a sheet per province listing its communes, their status and why")
    p.add_argument("--url", metavar="URL", help="ask a running collector (http://host:port) instead of the store")
    p.set_defaults(func=cmd_report)
    c = sub.add_parser("check-criteria", help="validate a criteria file (exit 1 with file:line messages)",
                       description="Load a criteria YAML and report every problem with its file, line and field.")
    c.add_argument("file", type=Path, help="criteria YAML, e.g. config/criteria.yaml")
    c.set_defaults(func=cmd_check_criteria)
