"""UI strings in Vietnamese and English: one catalog file per language.

Vietnamese is the default: the page is read in provincial offices. Catalogs
are plain YAML (``i18n/<lang>.yaml``) so a translator edits one file; a test
checks both have the same keys and placeholders.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from commune_common.yamlconf import load_yaml

LANGS = ("vi", "en")
DEFAULT_LANG = "vi"
CATALOG_DIR = Path(__file__).parent / "i18n"


def load_catalog(lang: str) -> dict[str, str]:
    """A key written twice is refused (ConfigError with its line): plain YAML keeps the last silently, so two
    pages sharing a key would show one page's text on the other."""
    path = CATALOG_DIR / f"{lang}.yaml"
    data, _ = load_yaml(path.read_text(encoding="utf-8"), str(path))
    if not isinstance(data, dict):
        raise ValueError(f"{CATALOG_DIR / lang}.yaml: must be a mapping of key: text")
    return {str(k): str(v) for k, v in data.items()}


@dataclass(frozen=True)
class Translator:
    """``t('days_left', days=3)``; a missing key shows as itself, never as an error page."""

    lang: str
    catalog: dict[str, str]

    def __call__(self, key: str, **values: object) -> str:
        text = self.catalog.get(key, key)
        return text.format(**values) if values else text

    def pick(self, texts: dict[str, str] | str | None, fallback: str = "") -> str:
        """A ``{"en": ..., "vi": ...}`` title in this language (or the other, or a plain string)."""
        if isinstance(texts, str):
            return texts
        if not texts:
            return fallback
        return texts.get(self.lang) or next(iter(texts.values()), fallback)


def load_translators() -> dict[str, Translator]:
    return {lang: Translator(lang, load_catalog(lang)) for lang in LANGS}
