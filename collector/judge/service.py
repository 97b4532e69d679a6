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
from typing import TYPE_CHECKING, Any

from commune_collector.judge.engine import Judge
from commune_collector.judge.metrics import JudgeMetrics
from commune_collector.judge.process import JudgeProxy
from commune_collector.judge.settings import JudgeSettings

if TYPE_CHECKING:
    from commune_collector.settings import CollectorSettings

log = logging.getLogger("commune_collector.judge")


CHECKPOINT_FILE = "judge-evidence.npz"


def build_judge(settings: JudgeSettings | None, store: Any, data_dir: Path | None = None) -> Judge | None:
    """A judge over the collector's database (its checkpoint in ``data_dir``), or None when judging is off."""
    if not _judging(settings, store):
        return None
    assert settings is not None
    from commune_collector.store.judge_evidence import StoreEvidence
    from commune_collector.store.verdicts import SqlVerdictStore

    config = settings.criteria()
    log.info("judge: %s, every %gs", config.describe(), settings.interval)
    checkpoint = data_dir / CHECKPOINT_FILE if settings.checkpoint and data_dir is not None else None
    return Judge(config, StoreEvidence(store), SqlVerdictStore.for_store(store), timezone=settings.timezone,
                 checkpoint=checkpoint, checkpoint_interval=settings.checkpoint_interval)


def build_judge_for_server(settings: CollectorSettings, store: Any, in_child: bool) -> Judge | JudgeProxy | None:
    """The server's judge: a ``JudgeProxy`` of a judge process when ``in_child``, else a ``Judge`` in this one."""
    if not in_child:
        return build_judge(settings.judge, store, settings.data_dir)
    if not _judging(settings.judge, store):
        return None
    proxy = JudgeProxy(settings, store)
    log.info("judge: %s, every %gs, in its own process", proxy.config.describe(), settings.judge.interval)
    return proxy


def _judging(settings: JudgeSettings | None, store: Any) -> bool:
    if settings is None or not settings.enabled:
        return False
    if not hasattr(store, "dialect_impl"):
        log.warning("the judge needs the SQL store; judging is off")
        return False
    return True


async def run_judge(state: Any) -> None:
    """Background task: pass every interval until ``state.stop``; metrics on ``state.registry`` meanwhile."""
    judge: Judge | JudgeProxy | None = getattr(state, "judge", None)
    if judge is None:
        return
    metrics = JudgeMetrics(judge)
    state.registry.register(metrics)
    try:
        await judge.run(state.stop, state.settings.judge.interval)
    finally:
        state.registry.unregister(metrics)
        await asyncio.to_thread(judge.close)
