"""How the collector builds its judge over the SQL store, in the server's process or in the judge's.

Both ``judge_service`` (the judge in the server) and ``judge_process`` (the
judge's own process) build it here, so neither imports the other back.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from commune_collector.judge.engine import Judge
from commune_collector.judge.settings import JudgeSettings
from commune_collector.store.judge_evidence import StoreEvidence
from commune_collector.store.judge_helper import ColdHelper
from commune_collector.store.verdicts import SqlVerdictStore

log = logging.getLogger("commune_collector.judge")


CHECKPOINT_FILE = "judge-evidence.npz"


def build_judge(settings: JudgeSettings | None, store: Any, data_dir: Path | None = None) -> Judge | None:
    """A judge over the collector's database (its checkpoint in ``data_dir``), or None when judging is off."""
    if not judging(settings, store):
        return None
    assert settings is not None
    config = settings.criteria()
    log.info("judge: %s, every %gs", config.describe(), settings.interval)
    checkpoint = data_dir / CHECKPOINT_FILE if settings.checkpoint and data_dir is not None else None
    source = StoreEvidence(store)
    source.use_packs = settings.hour_packs
    if settings.cold_helper and data_dir is not None:
        source.helper = ColdHelper(config, data_dir, settings.cold_helper_min_sites)
    return Judge(config, source, SqlVerdictStore.for_store(store), timezone=settings.timezone,
                 checkpoint=checkpoint, checkpoint_interval=settings.checkpoint_interval)


def judging(settings: JudgeSettings | None, store: Any) -> bool:
    if settings is None or not settings.enabled:
        return False
    if not hasattr(store, "dialect_impl"):
        log.warning("the judge needs the SQL store; judging is off")
        return False
    return True
