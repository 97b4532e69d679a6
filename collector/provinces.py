"""The 34 provinces and centrally-run cities (from 1 July 2025), shipped with the package."""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True)
class Province:
    slug: str
    name: str  # with diacritics: "Hà Nội"
    kind: str  # city | province


@functools.cache
def provinces() -> dict[str, Province]:
    """Every province by slug, in the file's order."""
    text = resources.files("commune_collector.data").joinpath("provinces.csv").read_text(encoding="utf-8")
    return {row["slug"]: Province(row["slug"], row["name"], row["kind"]) for row in csv.DictReader(text.splitlines())}
