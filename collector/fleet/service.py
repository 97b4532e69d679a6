"""The fleet feature's per-app state: built at start (a BACKGROUND task), read by the routes."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from commune_collector.fleet.db import FleetDb
from commune_collector.fleet.desired import ProfileSource
from commune_collector.fleet.rollout_db import RolloutDb
from commune_collector.fleet.rollout_metrics import RolloutMetrics
from commune_collector.fleet.rollouts import Counts
from commune_collector.fleet.settings import FleetSettings
from commune_collector.fleet.tracker import FleetMetrics, FleetTracker
from commune_collector.store.base import StoreError

log = logging.getLogger(__name__)


@dataclass
class Fleet:
    db: FleetDb
    tracker: FleetTracker
    profiles: ProfileSource
    settings: FleetSettings
    metrics: FleetMetrics
    rollouts: RolloutDb
    counts: Counts
    rollout_metrics: RolloutMetrics


def fleet_of(state: Any) -> Fleet:
    """The app's fleet state, made on first use (the BACKGROUND task makes it at start)."""
    if state.fleet is None:
        settings: FleetSettings = state.settings.fleet
        db = FleetDb(state.store)
        tracker = FleetTracker(db, settings.duplicate_window)
        state.fleet = Fleet(db, tracker, ProfileSource(settings), settings, FleetMetrics(tracker, time.time),
                            RolloutDb(db.db), Counts(), RolloutMetrics())
        state.registry.register(state.fleet.metrics)
    return state.fleet


async def run_fleet(state: Any) -> None:
    """Load the persisted agent states, then hold the fleet's connection until the app stops."""
    fleet = fleet_of(state)
    try:
        await asyncio.to_thread(fleet.tracker.load)
    except StoreError as exc:
        log.warning("fleet: cannot load the agents' config states: %s", exc)
    try:
        await state.stop.wait()
    finally:
        state.registry.unregister(fleet.metrics)  # an injected registry may serve the next app run too
        await asyncio.to_thread(fleet.db.close)


async def observe_report(state: Any, report: Any, received_at: float) -> None:
    """After a report is stored: note its config version and error; persist when they changed."""
    fleet = fleet_of(state)
    row = fleet.tracker.observe(report.site, report.instance, report.config_version, report.config_error,
                                received_at)
    if report.spool is not None:
        fleet.tracker.spools[report.site] = report.spool
    fleet.counts.observe(report.site, report.config_version, len(report.results),
                         sum(1 for r in report.results if not r.ok))
    if row is not None:
        try:
            await asyncio.to_thread(fleet.db.save_agent_state, row)
        except Exception as exc:  # noqa: BLE001 - the report is stored; this row is best effort
            log.warning("fleet: cannot save the agent state of %s: %s", report.site, exc)
