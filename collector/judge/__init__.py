"""The judge: criteria in YAML, verdicts from evidence, roll-ups, history and change events.

Public surface (see docs/architecture.md, "Judge"):

- ``load_criteria(path)`` -> ``CriteriaConfig`` (file:line errors on bad input)
- ``Judge(config, source, verdicts)``: ``run_pass()``, ``await run(stop, interval)``,
  ``add_listener(fn)`` where ``fn(changes: list[VerdictChange], snapshot)`` is
  called after every pass (a coroutine function is awaited), ``snapshot``
- ``Snapshot``: ``render(i)``/``verdict(site)`` (the API's SiteVerdict),
  ``rollup`` (provinces and national), ``views()`` (lazy site -> verdict mapping)
"""

from __future__ import annotations

from commune_collector.judge.criteria import (
    CriteriaConfig,
    Criterion,
    load_criteria,
    parse_criteria,
)
from commune_collector.judge.engine import Judge, PassStats
from commune_collector.judge.events import KINDS, VerdictChange
from commune_collector.judge.persist import MemoryVerdictStore, VerdictStore
from commune_collector.judge.source import EvidenceSource, MemoryEvidence, SiteRecord
from commune_collector.judge.verdict import SiteVerdictView, Snapshot

__all__ = [
    "KINDS",
    "CriteriaConfig",
    "Criterion",
    "EvidenceSource",
    "Judge",
    "MemoryEvidence",
    "MemoryVerdictStore",
    "PassStats",
    "SiteRecord",
    "SiteVerdictView",
    "Snapshot",
    "VerdictChange",
    "VerdictStore",
    "load_criteria",
    "parse_criteria",
]
