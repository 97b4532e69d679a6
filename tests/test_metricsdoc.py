"""docs/metrics.md is generated from the code; these tests fail when it is stale or a name is off."""

from __future__ import annotations

import re

from commune_agent import metricsdoc
from commune_agent.exposition import METRIC_DOCS
from commune_agent.registry import PROBES

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _all_docs() -> list:
    own = [doc for _, docs in metricsdoc._own_doc_modules() for doc in docs]
    return [*own, *(d for spec in PROBES.values() for d in spec.metrics)]


def test_docs_metrics_md_is_current() -> None:
    current = metricsdoc.DOC_PATH.read_text(encoding="utf-8") if metricsdoc.DOC_PATH.exists() else ""
    assert current == metricsdoc.render(), "docs/metrics.md is stale: run python -m commune_agent.metricsdoc --write"


def test_check_mode_reports_staleness(tmp_path, monkeypatch, capsys) -> None:
    stale = tmp_path / "metrics.md"
    stale.write_text("# Metrics\n\nold\n")
    monkeypatch.setattr(metricsdoc, "DOC_PATH", stale)
    assert metricsdoc.main(["--check"]) == 1
    assert "is stale" in capsys.readouterr().err
    assert metricsdoc.main(["--write"]) == 0
    assert metricsdoc.main(["--check"]) == 0


def test_every_family_is_in_the_document() -> None:
    text = metricsdoc.render()
    assert set(METRIC_DOCS) <= set(_all_docs())  # exposition's own families are found
    for doc in _all_docs():
        assert f"| `commune_{doc.name}` | {doc.type} |" in text, doc.name


def test_names_follow_prometheus_conventions() -> None:
    """Counters and only counters end in _total; lower snake case; no unit spelled the long way."""
    for doc in _all_docs():
        assert _NAME.match(doc.name), doc.name
        assert doc.type in {"gauge", "counter", "summary", "histogram", "info"}, doc.name
        assert doc.name.endswith("_total") == (doc.type == "counter"), doc.name
        assert not re.search(r"_(milliseconds|percent|kilobytes|minutes)\b", doc.name), doc.name
        assert doc.help.endswith("."), doc.name
