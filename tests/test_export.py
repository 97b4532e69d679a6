"""Exports for the meeting over a real judge of a nation with every status (no CLI: see test_judge_api)."""

from __future__ import annotations

import csv
import io
from datetime import datetime

import pytest
from openpyxl import load_workbook

from commune_collector import sheets as export
from commune_collector.judge.documents import province_detail
from testsupport.web.nation_scenario import EXPECTED_STATUS, Nation


@pytest.fixture(scope="module")
def docs() -> dict:
    snapshot = Nation().settle().judge.snapshot
    rollup = snapshot.rollup.to_json()
    details = [province_detail(snapshot, p["slug"]) for p in rollup["provinces"] if p["total"]]
    return {"provinces": rollup, "province": None, "details": details}


def test_xlsx_sheet_per_province_with_statuses_numbers_and_dates(docs, tmp_path):
    path = tmp_path / "meeting.xlsx"
    export.write_xlsx(export.build(docs, None, "vi", per_province=True), path, "vi")
    book = load_workbook(path)
    assert book.sheetnames[:2] == ["Toàn quốc", "Các tỉnh"] and set(book.sheetnames[2:]) == {"Hà Nội", "Huế", "Đà Nẵng"}
    national = book["Toàn quốc"]
    header = [c.value for c in national[2]]
    overall = [c.value for c in national[national.max_row]]
    by_status = dict(zip(header[6:], overall[6:], strict=True))
    assert by_status == {"Hoàn thành": 3, "Chưa hoàn thành": 3, "Đang chờ ổn định": 1, "Chưa đủ dữ liệu": 1,
                         "Chưa từng báo cáo": 2}
    assert all(isinstance(v, int) for v in overall[1:5] + overall[6:])
    hue = {row[0].value: row for row in book["Huế"].iter_rows(min_row=3)}
    assert hue["hue-silent"][2].value == "Chưa từng báo cáo" and hue["hue-silent"][5].value == "chưa từng gửi báo cáo"
    assert isinstance(hue["hue-battery"][3].value, datetime)
    danang = {row[0].value: row for row in book["Đà Nẵng"].iter_rows(min_row=3)}
    assert danang["dn-back"][2].value == "Đang chờ ổn định" and isinstance(danang["dn-back"][4].value, datetime)
    assert sum(book[name].max_row - 2 for name in book.sheetnames[2:]) == len(EXPECTED_STATUS)


def test_csv_is_for_machines(docs):
    out = io.StringIO()
    export.write_csv(export.build({**docs, "province": docs["details"][0]}, "ha-noi", "en")[0], out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    lossy = next(r for r in rows if r["Site"] == "hn-lossy")
    assert lossy["Status"] == "Not completed" and lossy["Failing criteria and why"].startswith("loss 12.3% over 24h")
    assert datetime.fromisoformat(lossy["Since (Vietnam time, UTC+7)"]).utcoffset().total_seconds() == 7 * 3600
    assert lossy["as_of"].endswith("+07:00")


@pytest.mark.parametrize("name", ["=HYPERLINK(\"http://x\")", "+1", "-2+3", "@SUM(A1)", "\tx"])
def test_a_name_never_becomes_a_formula(name, tmp_path):
    sheet = export.Sheet("x", 0.0, ["a", "b"], [[name, -5]])
    path = tmp_path / "f.xlsx"
    export.write_xlsx([sheet], path, "en")
    cell, number = load_workbook(path)["x"]["A3"], load_workbook(path)["x"]["B3"]
    assert cell.data_type == "s" and cell.value == name and cell.quotePrefix  # text shown as typed, never run
    assert number.value == -5, "numbers stay numbers, negative ones too"
    out = io.StringIO()
    export.write_csv(sheet, out)
    assert list(csv.reader(io.StringIO(out.getvalue())))[1][0] == "'" + name


def test_sheet_names_are_valid_and_unique():
    taken: set[str] = set()
    assert export.sheet_name("Hà Nội", taken) == "Hà Nội"
    assert export.sheet_name("Hà Nội", taken) == "Hà Nội (2)"
    assert export.sheet_name("a/b:c" + "x" * 40, taken) == ("a b c" + "x" * 40)[:31]
