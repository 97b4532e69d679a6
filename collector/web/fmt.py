"""How the status page writes times, values and numbers.

Times are shown in Vietnam time (UTC+7, no daylight saving) since every reader
is there; the offset is written next to them so nobody has to guess.
"""

from __future__ import annotations

import math
import unicodedata
from datetime import UTC, date, datetime, timedelta, timezone

from commune_collector.judge.quantity import format_value
from commune_collector.web.i18n import Translator
from commune_common.units import format_duration

VIETNAM = timezone(timedelta(hours=7), "ICT")


def local_time(ts: float | None) -> str:
    if ts is None:
        return "–"
    return datetime.fromtimestamp(ts, VIETNAM).strftime("%Y-%m-%d %H:%M")


def iso_utc(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def local_date(ts: float) -> date:
    return datetime.fromtimestamp(ts, VIETNAM).date()


def ago(ts: float | None, now: float, t: Translator) -> str:
    """``3 h ago`` / ``3 giờ trước``."""
    if ts is None:
        return "–"
    delta = now - ts
    if delta < -60:
        return t("in_future")
    delta = max(delta, 0)
    if delta < 90:
        return t("ago_seconds", n=int(delta))
    if delta < 5400:
        return t("ago_minutes", n=round(delta / 60))
    if delta < 2 * 86400:
        return t("ago_hours", n=round(delta / 3600))
    return t("ago_days", n=round(delta / 86400))


def value(v: float | None, unit: str, t: Translator) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return t("value_no_data")
    return format_value(v, unit)


def threshold(op: str, v: float, unit: str) -> str:
    return f"{op} {format_value(v, unit)}"


def window(seconds: float | None) -> str:
    return "–" if not seconds else format_duration(seconds)


def percent(part: float, whole: float) -> str:
    if not whole:
        return "–"
    share = 100.0 * part / whole
    return f"{share:.0f}%" if share >= 10 or share == 0 else f"{share:.1f}%"


def number(n: int | float, lang: str) -> str:
    """3321 -> ``3,321`` (en) or ``3.321`` (vi)."""
    text = f"{n:,.0f}" if float(n).is_integer() else f"{n:,.1f}"
    return text.replace(",", ".") if lang == "vi" and float(n).is_integer() else text


def fold(text: str) -> str:
    """Case- and accent-insensitive search key: ``Hà Nội`` and ``ha noi`` match."""
    text = text.replace("đ", "d").replace("Đ", "D")
    decomposed = unicodedata.normalize("NFD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
