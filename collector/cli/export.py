"""``commune-collector report``: the readiness export (built in ``commune_collector.export``)."""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from commune_collector import export
from commune_collector.cli.common import add_config_arg, operator_token, settings_from
from commune_collector.export import (
    FORMATS,
    ExportError,
    documents_from_store,
    documents_from_url,
    produce,
)


def cmd_report(args: argparse.Namespace) -> int:
    fmt = args.format
    if fmt == "xlsx" and args.output is None:
        print("error: --format xlsx writes a file: give --output FILE.xlsx", file=sys.stderr)
        return 2
    try:
        if args.url:
            docs = documents_from_url(args.url, args.province, per_province=args.sheet_per_province,
                                      token=operator_token(args))
        else:
            docs = documents_from_store(settings_from(args), args.province, per_province=args.sheet_per_province)
    except ExportError as exc:
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


def add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="the readiness table (national, or one province's communes and why)",
                       description="The readiness table for a meeting, or one province's communes and why.\n\n"
                                   + export.__doc__.split("\n\n")[2].replace("``", ""),
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
    p.add_argument("--token-file", metavar="FILE", help="with --url: a file holding an operator token "
                                                        "(default: $COMMUNE_OPERATOR_TOKEN)")
    p.set_defaults(func=cmd_report)
