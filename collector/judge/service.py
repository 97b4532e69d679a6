"""The judge inside the collector: built with the app's state, run as a background task.

``build_judge`` is called while the app's state is built (so routes, the
status page and the alerting task find ``state.judge`` from the start);
``run_judge`` is one of the app's ``BACKGROUND`` tasks: it registers the
judge's metrics on the app's registry and passes every ``judge.interval``
until the collector stops.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from collector.judge.engine import Judge
from collector.judge.metrics import JudgeMetrics
from collector.judge.settings import JudgeSettings

log = logging.getLogger("commune_collector.judge")


CHECKPOINT_FILE = "judge-evidence.npz"


def build_judge(settings: JudgeSettings | None, store: Any, data_dir: Path | None = None) -> Judge | None:
    """A judge over the collector's database (its checkpoint in ``data_dir``), or None when judging is off."""
    if settings is None or not settings.enabled:
        return None
    if not hasattr(store, "dialect_impl"):
        log.warning("the judge needs the SQL store; judging is off")
        return None
    from collector.store.judge_evidence import StoreEvidence
    from collector.store.verdicts import SqlVerdictStore

    config = settings.criteria()
    log.info("judge: %s, every %gs", config.describe(), settings.interval)
    checkpoint = data_dir / CHECKPOINT_FILE if settings.checkpoint and data_dir is not None else None
    return Judge(config, StoreEvidence(store), SqlVerdictStore.for_store(store), timezone=settings.timezone,
                 checkpoint=checkpoint, checkpoint_interval=settings.checkpoint_interval)


async def run_judge(state: Any) -> None:
    """Background task: pass every interval until ``state.stop``; metrics on ``state.registry`` meanwhile."""
    judge: Judge | None = getattr(state, "judge", None)
    if judge is None:
        return
    metrics = JudgeMetrics(judge)
    state.registry.register(metrics)
    try:
        await judge.run(state.stop, state.settings.judge.interval)
    finally:
        state.registry.unregister(metrics)
        await asyncio.to_thread(judge.close)
