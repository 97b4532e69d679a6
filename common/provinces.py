"""The 34 province slugs and names, for the agent's config (the agent never imports the collector).

``common/provinces.csv`` is the same file as the collector's
``collector/data/provinces.csv`` (a test keeps them equal).
"""

from __future__ import annotations

import csv
import difflib
import functools
import re
import unicodedata
from importlib import resources


@functools.cache
def province_names() -> dict[str, str]:
    """Province name (with diacritics) by slug, in the file's order."""
    text = resources.files("commune_common").joinpath("provinces.csv").read_text(encoding="utf-8")
    return {row["slug"]: row["name"] for row in csv.DictReader(text.splitlines())}


def slugify(text: str) -> str:
    """'Hà Nội' -> 'ha-noi': lower-case ASCII letters and digits joined by dashes."""
    ascii_text = unicodedata.normalize("NFKD", text.replace("đ", "d").replace("Đ", "D"))
    ascii_text = ascii_text.encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")


def nearest_provinces(value: str, n: int = 3) -> list[str]:
    """The slugs closest to what was typed, by the typed text and by its slug form."""
    slugs = list(province_names())
    found = difflib.get_close_matches(slugify(value) or value, slugs, n=n, cutoff=0.5)
    return found or difflib.get_close_matches(value.lower(), slugs, n=n, cutoff=0.3)
