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

import json
import sys
from pathlib import Path
from typing import Any, TextIO

from commune_collector import sheets

FORMATS = ("table", "csv", "json", "xlsx")


# -- getting the documents ------------------------------------------------------------


def documents_from_url(url: str, province: str | None, timeout: float = 30.0, per_province: bool = False,
                       token: str | None = None) -> dict:
    """The API documents from a running collector, read with an operator's token (cut to its scope).

    ``per_province``: every province's communes too.
    """
    import httpx  # start-up: only `report --url` talks HTTP; every other subcommand skips ~0.25 s and 29 MB

    base = url.rstrip("/")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with httpx.Client(timeout=timeout, headers=headers) as client:
            provinces = _get(client, f"{base}/api/v1/provinces")
            detail = _get(client, f"{base}/api/v1/provinces/{province}") if province else None
            details = [_get(client, f"{base}/api/v1/provinces/{p['slug']}") for p in provinces["provinces"]
                       if p["total"]] if per_province and not province else []
    except httpx.HTTPError as exc:
        raise ExportError(f"cannot reach the collector at {base}: {exc}") from None
    return {"provinces": provinces, "province": detail, "details": details}


def _get(client: Any, url: str) -> dict:
    response = client.get(url)
    if response.status_code != 200:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise ExportError(f"GET {url}: {response.status_code} {detail}")
    return response.json()


def documents_from_store(settings: Any, province: str | None, progress: TextIO | None = sys.stderr,
                         per_province: bool = False) -> dict:
    """Judge once, read-only, from the configured store and return the API documents."""
    from commune_collector.judge.documents import province_detail
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
            raise ExportError(f"no province {province!r}")
        details = [province_detail(snapshot, p.slug) for p in snapshot.rollup.provinces
                   if p.total] if per_province and not province else []
        return {"provinces": snapshot.rollup.to_json(), "province": detail, "details": details}
    finally:
        store.close()


class ExportError(Exception):
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
    built = sheets.build(docs, province, lang, per_province)
    if fmt == "xlsx":
        assert output is not None
        sheets.write_xlsx(built, output, lang)
    elif fmt == "csv":
        sheets.write_csv(built[0], out)
    else:
        out.write(sheets.as_of_line(built[0], lang) + "\n\n")
        render_table(sheets.text_rows(built[0], lang), out)
