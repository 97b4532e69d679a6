"""Spreadsheet cells that stay text: no formula injection in any CSV or XLSX the collector writes.

Names in exports come from the provinces' inventory files, and a spreadsheet
runs a cell beginning with ``=``, ``+``, ``-`` or ``@`` (or a tab or carriage
return before one) as a formula: ``=HYPERLINK(...)`` in a commune's name
would become a live link in the meeting's spreadsheet. OWASP's advice ("CSV
injection") is followed: such a text cell gets a leading single quote in CSV,
every CSV field is quoted, and in XLSX the cell is written as a string (never
a formula) with Excel's quote prefix, so editing it keeps it text. A cell that
is a number (``-3.5``, ``12``) is left alone: in XLSX it is written as a
number, so it still sums.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?$")  # the canonical form only: "007" or "+1" stay text

Cell = str | int | float | None


def is_number(text: str) -> bool:
    """Whether the text is a plain decimal number a spreadsheet would read as the same number."""
    return bool(_NUMBER.match(text))


def neutral_text(text: str) -> str:
    """The text as a CSV field that no spreadsheet evaluates (OWASP: prefix a single quote)."""
    if text.startswith(FORMULA_STARTS) and not is_number(text):
        return "'" + text
    return text


def csv_cell(value: Cell) -> Cell:
    if isinstance(value, str):
        return neutral_text(value)
    return value


def write_csv(rows: Iterable[Sequence[Cell]], out: TextIO) -> None:
    """Rows as CSV, every field quoted and every text field neutralised."""
    writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerows([csv_cell(v) for v in row] for row in rows)


def xlsx_value(value: Cell) -> Cell:
    """What a cell holds in XLSX: numbers (and number-looking text) as numbers, the rest as text."""
    if isinstance(value, str) and is_number(value):
        return float(value) if "." in value else int(value)
    return value


def set_cell(sheet: Any, row: int, column: int, value: Cell) -> Any:
    """Write one XLSX cell; text is stored as a string, never a formula, with the quote prefix where it matters."""
    value = xlsx_value(value)
    cell = sheet.cell(row=row, column=column)
    cell.value = value
    if isinstance(value, str):
        cell.data_type = "s"  # openpyxl would store "=..." as a formula
        if value.startswith(FORMULA_STARTS):
            cell.quotePrefix = True
    return cell
