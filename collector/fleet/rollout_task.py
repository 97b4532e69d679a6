"""The collector's rollout task: follow the store's open rollout, count its check results, halt it by itself.

Every ``fleet.rollout.check_every`` it adds the check results counted since
the last pass to the store (an increment: replicas add up), re-reads the open
rollout (an operator may have acted through the CLI or another replica) and
applies the halt rule. A halt takes effect on the next poll of each canary:
it is served the old version again, which it applies like any other change.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from commune_collector.fleet.rollout_metrics import RolloutMetrics
from commune_collector.fleet.rollouts import evaluate, serving
from commune_collector.fleet.service import Fleet, fleet_of
from commune_collector.store.base import StoreError

log = logging.getLogger(__name__)


def _pass(fleet: Fleet, metrics: RolloutMetrics) -> str | None:
    """One pass: flush the counts, follow the store, apply the halt rule; the halt reason if it halted."""
    for rollout_id, counts in fleet.counts.drain().items():
        fleet.rollouts.add_counts(rollout_id, counts)
    now = time.time()
    reason = evaluate(fleet.rollouts, fleet.settings.rollout, now)
    serving(fleet.rollouts, fleet.profiles)
    current = fleet.rollouts.open()
    if current is not None and current.state == "running":  # a halted rollout's figures stay as they halted
        if fleet.counts.rollout_id != current.id:
            fleet.counts.versions = {s.site: (s.old_version, s.new_version) for s in fleet.rollouts.sites(current.id)}
            fleet.counts.rollout_id = current.id
    else:
        fleet.counts.versions, fleet.counts.rollout_id = {}, ""
    if current is not None:
        metrics.rollout = current
    elif metrics.rollout is not None:
        metrics.rollout = fleet.rollouts.get(metrics.rollout.id)
    return reason


async def follow(state: Any) -> None:
    """Re-read the open rollout now (after a write through the API on this replica)."""
    fleet = fleet_of(state)
    await asyncio.to_thread(_pass, fleet, fleet.rollout_metrics)


async def run_rollouts(state: Any) -> None:
    """Collector background task: follow and evaluate the open rollout until the app stops."""
    fleet = fleet_of(state)
    metrics = fleet.rollout_metrics
    state.registry.register(metrics)
    every = fleet.settings.rollout.check_every
    try:
        while not state.stop.is_set():
            try:
                reason = await asyncio.to_thread(_pass, fleet, metrics)
                if reason:
                    log.warning("rollout %s halted: %s", metrics.rollout.id if metrics.rollout else "?", reason)
            except StoreError as exc:
                log.warning("rollouts: cannot follow the store: %s", exc)
            try:
                await asyncio.wait_for(state.stop.wait(), timeout=every)
            except TimeoutError:
                pass
    finally:
        state.registry.unregister(metrics)
