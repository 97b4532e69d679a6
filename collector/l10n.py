"""Numbers, shares, durations and times the way each reader writes them.

Vietnamese writes ``3.321`` and ``12,3%`` where English writes ``3,321`` and
``12.3%``; a duration is ``1 giờ 30 phút`` or ``1h30m``. Every place a person
reads a figure (pages, reasons, exports, alerts) goes through here, so one
page never mixes the two. Times are Vietnam time (UTC+7, no daylight saving)
with the zone named.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

RATIO, SECONDS, BOOL = "ratio", "seconds", "bool"  # the judge's units (judge.quantity); not imported: the judge imports this
LANGS = ("vi", "en")
VIETNAM = timezone(timedelta(hours=7), "ICT")
ZONE_NAME = {"vi": "giờ Việt Nam, UTC+7", "en": "Vietnam time, UTC+7"}
_YES_NO = {"vi": ("không", "có"), "en": ("no", "yes")}
_SEPARATORS = {"vi": (".", ","), "en": (",", ".")}  # thousands, decimal
_UNITS = {"vi": {"d": " ngày", "h": " giờ", "m": " phút", "s": " giây", "ms": " ms", "join": " "},
          "en": {"d": "d", "h": "h", "m": "m", "s": "s", "ms": "ms", "join": ""}}


def number(value: float, lang: str, decimals: int = 0) -> str:
    """3321 -> ``3.321`` (vi) / ``3,321`` (en); ``decimals`` digits after the separator."""
    text = f"{value:,.{decimals}f}"
    thousands, decimal = _SEPARATORS[lang]
    return text.replace(",", "\0").replace(".", decimal).replace("\0", thousands)


def decimal(value: float, lang: str, digits: int = 3) -> str:
    """A value with ``digits`` significant digits and no trailing zeros: ``12,3`` / ``12.3``."""
    text = f"{value:.{digits}g}"
    if "e" in text:
        text = f"{value:.{max(digits - 3, 0)}f}"
    return text.replace(".", _SEPARATORS[lang][1])


def percent(share: float, lang: str) -> str:
    """0.123 -> ``12,3%``; one decimal at most, rounded down so 9.96% never reads as 10%."""
    if share is None or math.isnan(share):
        return "–"
    tenths = math.floor(share * 1000 + 1e-9) / 10
    text = f"{tenths:.0f}" if tenths.is_integer() else f"{tenths:.1f}"
    return text.replace(".", _SEPARATORS[lang][1]) + "%"


def duration(seconds: float, lang: str) -> str:
    """5400 -> ``1 giờ 30 phút`` / ``1h30m``; windows of whole hours up to 48h stay in hours."""
    units = _UNITS[lang]
    if 0 < seconds < 1:
        return f"{round(seconds * 1000)}{units['ms']}"
    rest = int(round(seconds))
    if rest % 3600 == 0 and 3600 <= rest <= 48 * 3600:
        return f"{rest // 3600}{units['h']}"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{units[unit]}")
            rest %= size
    return units["join"].join(parts) or f"0{units['s']}"


def age(seconds: float, lang: str) -> str:
    """How long something has lasted, to the precision a reader cares for: ``2 ngày 3 giờ``, ``1h48m``."""
    seconds = max(0.0, seconds)
    if seconds >= 86400:
        seconds -= seconds % 3600
    elif seconds >= 3600:
        seconds -= seconds % 60
    elif seconds >= 90:
        seconds = round(seconds / 60) * 60
    return duration(seconds, lang) if seconds >= 1 else duration(0, lang)


def quantity(value: float | None, unit: str, lang: str, digits: int = 3) -> str:
    """A measured value in its unit: ``12,3%``, ``150 ms``, ``3`` (``digits`` significant digits)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if unit == RATIO:
        return decimal(value * 100, lang, digits) + "%"
    if unit == BOOL and value in (0, 1):
        return _YES_NO[lang][int(value)]
    if unit == SECONDS:
        if 0 < value < 1:
            return decimal(value * 1000, lang, digits) + _UNITS[lang]["ms"]
        if value < 60:
            return decimal(value, lang, digits) + _UNITS[lang]["s"]
        return duration(value, lang)
    return decimal(float(value), lang, 6)


def local_datetime(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, VIETNAM)


def local_time(ts: float | None, lang: str, zone: bool = False) -> str:
    """``2025-07-01 08:30`` in Vietnam time, with ``(giờ Việt Nam, UTC+7)`` when ``zone``."""
    if ts is None:
        return "–"
    text = local_datetime(ts).strftime("%d/%m/%Y %H:%M" if lang == "vi" else "%Y-%m-%d %H:%M")
    return f"{text} ({ZONE_NAME[lang]})" if zone else text


def local_date(ts: float, lang: str) -> str:
    return local_datetime(ts).strftime("%d/%m/%Y" if lang == "vi" else "%Y-%m-%d")


def pick_lang(header: str | None, default: str = "vi") -> str:
    """The first language of an ``Accept-Language`` header we speak (by q-value), else ``default``."""
    if not header:
        return default
    ranked = []
    for n, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            key, _, val = param.strip().partition("=")
            if key == "q":
                try:
                    q = float(val)
                except ValueError:
                    q = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGS and q > 0:
            ranked.append((-q, n, primary))
    return min(ranked)[2] if ranked else default
