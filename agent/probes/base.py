"""What every probe shares: its config base, its context, its result, its spec.

A probe is one async function ``run(config, ctx) -> ProbeResult``. The runner
(``commune_agent.runner``), not the probe, owns the timeout, the duration and turning
an exception into a failed result, as blackbox_exporter's handler does; a probe
only measures and adds its own values.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import msgspec
from pydantic import BaseModel, ConfigDict, Field, field_validator

from commune_common.units import Duration
from commune_common.wire import value_key


class ProbeError(Exception):
    """A failure the probe understood; its message is the reason shown to users."""


MIN_INTERVAL_S = 1.0


def check_interval(value: float | None) -> float | None:
    """Refuse check intervals under a second: rounds that often measure the agent, not the link."""
    if value is not None and 0 < value < MIN_INTERVAL_S:
        raise ValueError(f"is too short: a check runs at most once a second (interval at least "
                         f"{MIN_INTERVAL_S:g}s; 30s is usual)")
    return value


class TargetConfig(BaseModel):
    """Fields every check has, whatever its kind. Probe configs subclass it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    probe: str
    name: str | None = Field(default=None, description="label for this check; defaults to its host/url")
    interval: Duration | None = Field(default=None, description="time between rounds; defaults to defaults.interval")
    timeout: Duration | None = Field(default=None, description="bound on one round; defaults to defaults.timeout")

    @field_validator("interval", "timeout")
    @classmethod
    def _positive(cls, value: float | None) -> float | None:
        if value is not None and value <= 0:
            raise ValueError("must be longer than 0s")  # 0s would spin the scheduler or time out at once
        return value

    @field_validator("interval")
    @classmethod
    def _not_too_often(cls, value: float | None) -> float | None:
        return check_interval(value)

    def display_name(self) -> str:
        """The target label when ``name`` is not given."""
        return self.name or self.probe


class Sample(msgspec.Struct, frozen=True, gc=False):
    """One measured value; ``labels`` distinguish values of one name (stat, interface, ...).

    A msgspec Struct, as ``ProbeResult``: 500 ICMP rounds ending together make 4,000 samples at
    once, and a Struct is built in C, several times faster than a frozen dataclass.
    """

    name: str
    value: float
    labels: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> str:
        return value_key(self.name, dict(self.labels))


class ProbeResult(msgspec.Struct, frozen=True):
    """What one round found. ``ok`` false always comes with a ``reason``."""

    ok: bool
    samples: tuple[Sample, ...] = ()
    reason: str = ""
    info: dict[str, str] = {}  # text facts for humans: sysDescr, cert subject (msgspec copies the default)
    duration_s: float = 0.0
    ts: float = 0.0

    def timed(self, duration_s: float, ts: float) -> ProbeResult:
        """This result with the runner's measurements."""
        return msgspec.structs.replace(self, duration_s=duration_s, ts=ts)

    def value(self, name: str, **labels: str) -> float | None:
        """The value of one sample, or None: handy in tests and tables."""
        want = tuple(sorted(labels.items()))
        for s in self.samples:
            if s.name == name and tuple(sorted(s.labels)) == want:
                return s.value
        return None


def sample(name: str, value: float, **labels: str) -> Sample:
    return Sample(name, float(value), tuple(sorted(labels.items())))


@dataclass(frozen=True)
class Binding:
    """Where a probe's traffic leaves from, so a backup-link probe measures the backup path."""

    source_address: str | None = None
    interface: str | None = None


@dataclass
class ProbeContext:
    """Everything a probe may touch besides its config: injected, so tests can replace it."""

    binding: Binding = field(default_factory=Binding)
    timeout: float = 5.0
    due: float | None = None  # loop time this round was due (the scheduler's slot); None: now
    state: dict[str, Any] = field(default_factory=dict)  # survives between rounds of one check
    resources: dict[str, Any] = field(default_factory=dict)  # shared engines: icmp, snmp, ...
    clock: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic

    def resource(self, name: str, factory: Callable[[], Any]) -> Any:
        """A shared engine (one ICMP socket set, one SNMP engine) made on first use."""
        if name not in self.resources:
            self.resources[name] = factory()
        return self.resources[name]


C = TypeVar("C", bound=TargetConfig)


@dataclass(frozen=True)
class MetricDoc:
    """A metric family a probe emits, for /metrics HELP text and docs/metrics.md."""

    name: str
    help: str
    labels: tuple[str, ...] = ()
    type: str = "gauge"


@dataclass(frozen=True)
class ProbeSpec(Generic[C]):
    """A probe kind: its config model, its function and the metrics it emits."""

    kind: str
    config: type[C]
    run: Callable[[C, ProbeContext], Awaitable[ProbeResult]]
    metrics: tuple[MetricDoc, ...] = ()
    summary: str = ""
    section: str = "link"  # where its config goes: link targets, devices, power or host
    needs_slot: bool = True  # False: rounds share one engine socket (icmp), so the scheduler's bound skips them
    # True: the probe keeps its round within ``ctx.timeout`` itself (raising TimeoutError), so the runner
    # does not arm a timer of its own for every round (icmp: 500 rounds at once feel 500 timers)
    self_timed: bool = False
