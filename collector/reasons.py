"""The reason catalogue: a reason code and its parameters rendered in the reader's language.

One catalogue (``data/reasons.yaml``) serves the pages, the exports, the
alerts and the API, so a reason reads the same everywhere and a Vietnamese
reader never meets an English sentence. Placeholders say how to write their
parameter (``{value:q}``, ``{window_s:dur}``, ``{coverage:pct}``, ...; see the
file's header) and the language decides the separators and unit words
(``commune_collector.l10n``).
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from commune_collector import l10n

CATALOGUE_FILE = Path(__file__).parent / "data" / "reasons.yaml"


class CatalogueError(ValueError):
    """The catalogue file is malformed (the message names the file and the code)."""


@lru_cache(maxsize=1)
def catalogue() -> dict[str, dict[str, str]]:
    """``{code: {"vi": text, "en": text}}`` from ``data/reasons.yaml``; every code needs both languages."""
    data = yaml.safe_load(CATALOGUE_FILE.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise CatalogueError(f"{CATALOGUE_FILE}: must map reason codes to {{vi: ..., en: ...}}")
    out: dict[str, dict[str, str]] = {}
    for code, texts in data.items():
        if not isinstance(texts, dict) or any(not isinstance(texts.get(lang), str) for lang in l10n.LANGS):
            raise CatalogueError(f"{CATALOGUE_FILE}: {code}: needs a 'vi' and an 'en' text")
        out[str(code)] = {lang: texts[lang] for lang in l10n.LANGS}
    return out


class _Formatter(string.Formatter):
    """Writes each parameter the way its placeholder's spec says, in one language."""

    def __init__(self, lang: str, params: Mapping[str, Any]):
        self.lang = lang
        self.params = params

    def format_field(self, value: Any, spec: str) -> str:
        lang = self.lang
        if spec == "q":
            return l10n.quantity(value, str(self.params.get("unit", "")), lang)
        if spec == "bound":  # a proven bound next to a threshold: one digit more than a measured value
            return l10n.quantity(value, str(self.params.get("unit", "")), lang, digits=4)
        if spec == "dur":
            return l10n.duration(float(value), lang)
        if spec == "pct":
            return l10n.percent(float(value), lang)
        if spec == "num":
            return l10n.number(float(value), lang)
        if spec == "time":
            return l10n.local_time(float(value), lang)
        if spec == "text":
            return pick(value, lang)
        return str(value)


def pick(texts: Any, lang: str) -> str:
    """A ``{"vi": ..., "en": ...}`` name in ``lang`` (the other language, or a plain string, if that is all)."""
    if isinstance(texts, Mapping):
        return str(texts.get(lang) or next(iter(texts.values()), ""))
    return "" if texts is None else str(texts)


def render(code: str, params: Mapping[str, Any] | None, lang: str) -> str:
    """The reason as a sentence in ``lang``; an unknown code shows as itself (never an error page)."""
    entry = catalogue().get(code)
    if entry is None:
        return code
    params = params or {}
    try:
        return _Formatter(lang, params).vformat(entry[lang], (), params)
    except (KeyError, IndexError, ValueError, TypeError):
        return entry[lang].split("{", 1)[0].strip() or code


def render_any(reason: Any, lang: str) -> str:
    """A reason given as ``{"code", "params"}``, or legacy text, in ``lang``."""
    if isinstance(reason, Mapping) and "code" in reason:
        return render(str(reason["code"]), reason.get("params"), lang)
    return pick(reason, lang)


SELF_NAMING = frozenset({"measured", "measured_now", "no_value", "flag"})  # these name what they measured


def criterion_line(row: Mapping[str, Any], lang: str) -> str:
    """``title: reason`` for a criterion (API row with reason_code/params, or legacy text), named once."""
    code = row.get("reason_code")
    reason = render(str(code), row.get("reason_params"), lang) if code else str(row.get("reason") or "")
    if code in SELF_NAMING:
        return reason
    title = pick(row.get("title"), lang) or str(row.get("id", ""))
    return f"{title}: {reason}" if reason else title


def reasons_text(reasons: Iterable[Mapping[str, Any]], lang: str,
                 titles: Mapping[str, str] | None = None) -> str:
    """Why a verdict changed, in ``lang``: ``title: reason; ...`` from a transition's reason list
    (``{"criterion", "code", "params"}``); a criterion is named by its title when given, else its id."""
    lines = []
    for r in reasons:
        text = render(str(r.get("code")), r.get("params"), lang)
        criterion = r.get("criterion")
        if criterion and r.get("code") not in SELF_NAMING:
            text = f"{(titles or {}).get(criterion, criterion)}: {text}"
        lines.append(text)
    return "; ".join(lines)


def english(reasons: Iterable[Mapping[str, Any]]) -> str:
    """The English text a transition's ``detail`` keeps for readers of that field."""
    return reasons_text(reasons, "en")


def transition_text(transition: Mapping[str, Any], lang: str, titles: Mapping[str, str] | None = None) -> str:
    """A stored transition's reasons in ``lang``; rows from before reasons were data show their text in
    English only (an English sentence never reaches a Vietnamese reader)."""
    if transition.get("reasons"):
        return reasons_text(transition["reasons"], lang, titles)
    return str(transition.get("detail") or "") if lang == "en" else ""


def placeholders(text: str) -> set[tuple[str, str]]:
    """``{(name, spec)}`` used by a text (the test compares the two languages with it)."""
    return {(name, spec or "") for _, name, spec, _ in string.Formatter().parse(text) if name is not None}


def localize(doc: Any, lang: str) -> Any:
    """A copy of an API document whose ``reason`` fields are rendered in ``lang`` from their code."""
    if isinstance(doc, list):
        return [localize(x, lang) for x in doc]
    if not isinstance(doc, dict):
        return doc
    out = {k: localize(v, lang) for k, v in doc.items()}
    if "reason_code" in out:
        out["reason"] = render(out["reason_code"], out.get("reason_params"), lang)
    if out.get("reasons") and "detail" in out:  # a verdict change: its detail in the reader's language
        out["detail"] = reasons_text(out["reasons"], lang)
    return out
