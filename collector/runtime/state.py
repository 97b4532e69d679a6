"""The per-run state of a collector app, shared by its routes and background tasks."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

from commune_collector.aggregator import Aggregator
from commune_collector.auth import TokenVerifier
from commune_collector.metrics import IngestStats
from commune_collector.remote_write import RemoteWriter
from commune_collector.settings import CollectorSettings
from commune_collector.store.base import Store


@dataclass
class CollectorState:
    """Everything a request handler may need, built once per app run."""

    settings: CollectorSettings
    store: Store
    registry: CollectorRegistry
    verifier: TokenVerifier
    ingest_stats: IngestStats = field(default_factory=IngestStats)
    aggregator: Aggregator | None = None
    aggregate_in_child: bool = False  # the aggregator runs in a child process (collector.aggregator)
    remote_writer: RemoteWriter | None = None
    operators: Any = None  # commune_collector.access.tokens.OperatorVerifier
    judge: Any = None  # collector.judge.Judge when judging is on (runtime.judge_service)
    fleet: Any = None  # commune_collector.fleet.service.Fleet, made at start
    silences: Any = None  # commune_collector.maintenance.silences.SilenceSync when alerting is on
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    started_at: float = field(default_factory=time.time)
