"""No formula in any spreadsheet the collector writes: ``report`` CSV and XLSX, read back as a spreadsheet would.

Communes whose names (from a province's inventory file) begin with ``=``,
``+``, ``-``, ``@`` or a tab are imported through the CLI; the report made
from the store must hold them as text: in CSV with OWASP's leading quote, in
XLSX as string cells (openpyxl reading the file back finds no formula), while
a number stays a number.
"""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from openpyxl import Workbook, load_workbook

from commune_collector.cells import neutral_text, set_cell, write_csv

EVIL = {"hn-link": '=HYPERLINK("http://evil.example/","bấm vào đây")', "hn-plus": "+cmd|' /C calc'!A0",
        "hn-minus": "-2+3", "hn-at": "@SUM(1+1)", "hn-tab": "\t=1+1", "hn-neg": "-3.5"}
STORED = {site: name.strip() for site, name in EVIL.items()}  # the inventory trims names (the tab goes)


@pytest.mark.parametrize(("text", "expected"), [
    ("=1+2", "'=1+2"), ("+1+2", "'+1+2"), ("-2+3", "'-2+3"), ("@SUM(A1)", "'@SUM(A1)"), ("\t=1", "'\t=1"),
    ("\r=1", "'\r=1"), ("-3.5", "-3.5"), ("-12", "-12"), ("Phường Ba Đình", "Phường Ba Đình"), ("", ""),
    ("3/34", "3/34")])
def test_neutral_text(text: str, expected: str) -> None:
    assert neutral_text(text) == expected


def test_csv_quotes_every_field_and_keeps_numbers() -> None:
    out = io.StringIO()
    write_csv([["=1+2", "-3.5", 7, "a"]], out)
    assert out.getvalue() == "\"'=1+2\",\"-3.5\",\"7\",\"a\"\n"


def test_xlsx_cells_are_text_or_numbers_never_formulas(tmp_path: Path) -> None:
    book = Workbook()
    for n, value in enumerate(["=1+2", "-3.5", "12", "@A1", "-2+3", "text"], start=1):
        set_cell(book.active, n, 1, value)
    book.save(tmp_path / "cells.xlsx")
    cells = [row[0] for row in load_workbook(tmp_path / "cells.xlsx").active.iter_rows()]
    assert [(c.value, c.data_type) for c in cells] == [("=1+2", "s"), (-3.5, "n"), (12, "n"), ("@A1", "s"),
                                                        ("-2+3", "s"), ("text", "s")]
    assert [c.quotePrefix for c in cells] == [True, False, False, True, True, False]


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding the evil communes, imported through the CLI."""
    base = tmp_path_factory.mktemp("cells")
    path = base / "collector.yaml"
    path.write_text(yaml.safe_dump({"data_dir": str(base / "data")}), encoding="utf-8")
    inventory = io.StringIO()
    writer = csv.writer(inventory, lineterminator="\n")
    writer.writerow(["id", "name", "province", "commune"])
    for site, name in EVIL.items():
        writer.writerow([site, name, "ha-noi", name])
    (base / "sites.csv").write_text(inventory.getvalue(), encoding="utf-8")
    _cli(path, "sites", "import", str(base / "sites.csv"))
    return path


def _cli(config: Path, *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "commune_collector.cli", *args, "--config", str(config)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_report_csv_neutralises_every_name(config: Path) -> None:
    rows = list(csv.reader(io.StringIO(_cli(config, "report", "--province", "ha-noi", "--format", "csv"))))
    communes = {row[0]: row[1] for row in rows[1:]}
    assert communes == {site: name if name == "-3.5" else "'" + name for site, name in STORED.items()}
    for row in rows:
        for cell in row:
            assert not cell.startswith(("=", "+", "@", "\t", "\r")), cell
            assert not cell.startswith("-") or cell == "-3.5", cell


@pytest.mark.parametrize("province", [None, "ha-noi"])
def test_report_xlsx_has_no_formula(config: Path, tmp_path: Path, province: str | None) -> None:
    out = tmp_path / "readiness.xlsx"
    _cli(config, "report", "--format", "xlsx", "--output", str(out), *(["--province", province] if province else []))
    book = load_workbook(out)
    cells = [cell for sheet in book.worksheets for row in sheet.iter_rows() for cell in row]
    assert cells and not [c.coordinate for c in cells if c.data_type == "f"]
    if province:
        communes = {row[0].value: row[1] for row in book.worksheets[0].iter_rows(min_row=3)}  # as-of, header
        assert {site: cell.value for site, cell in communes.items()} == {**STORED, "hn-neg": -3.5}
        assert communes["hn-link"].data_type == "s" and communes["hn-link"].quotePrefix
        assert communes["hn-neg"].data_type == "n"
    else:
        provinces = [[c.value for c in row] for row in book["Các tỉnh"].iter_rows(min_row=3)]
        hanoi = next(row for row in provinces if row[0] == "Hà Nội")
        assert hanoi[1:3] == [len(EVIL), 0]  # counts are numbers in the spreadsheet
