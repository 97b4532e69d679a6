"""The judge inside the collector: built with the app's state, run as a background task.

``build_judge_for_server`` is called while the app's state is built (so routes, the
status page and the alerting task find ``state.judge`` from the start);
``run_judge`` is one of the app's ``BACKGROUND`` tasks: it registers the
judge's metrics on the app's registry and passes every ``judge.interval``
until the collector stops.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from commune_collector.judge.engine import Judge
from commune_collector.judge.metrics import JudgeMetrics
from commune_collector.runtime.judge_build import build_judge, judging
from commune_collector.runtime.judge_process import JudgeProxy

if TYPE_CHECKING:
    from commune_collector.settings import CollectorSettings

log = logging.getLogger("commune_collector.judge")


def build_judge_for_server(settings: CollectorSettings, store: Any, in_child: bool) -> Judge | JudgeProxy | None:
    """The server's judge: a ``JudgeProxy`` of a judge process when ``in_child``, else a ``Judge`` in this one."""
    if not in_child:
        return build_judge(settings.judge, store, settings.data_dir)
    if not judging(settings.judge, store):
        return None
    proxy = JudgeProxy(settings, store)
    log.info("judge: %s, every %gs, in its own process", proxy.config.describe(), settings.judge.interval)
    return proxy


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
