"""Helpers for the device and power tests: synthetic .snmprec devices, live rewrites, probe runs.

snmpsim re-reads a data file whose mtime changed (whole seconds) and rebuilds
its index when the file is newer than the index, so a rewrite gets an mtime
safely in the future: the next request then sees the new values.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from commune_agent.checks import Check
from commune_agent.probes.base import ProbeContext, ProbeResult, TargetConfig
from commune_agent.registry import PROBES
from commune_agent.runner import run_check
from testsupport.peers.snmpsim import write_snmprec

# .snmprec type tags
INTEGER, OCTETS, OID, COUNTER32, GAUGE32, TIMETICKS, COUNTER64 = 2, 4, 6, 65, 66, 67, 70
Record = tuple[str, int | str, object]


class FakeClock:
    """A monotonic clock the test moves, so rates come out exact."""

    def __init__(self, start: float = 1000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def system_records(uptime_ticks: int, name: str = "test-device") -> list[Record]:
    return [("1.3.6.1.2.1.1.1.0", OCTETS, f"{name} synthetic device"),
            ("1.3.6.1.2.1.1.2.0", OID, "1.3.6.1.4.1.8072.3.2.10"),
            ("1.3.6.1.2.1.1.3.0", TIMETICKS, uptime_ticks),
            ("1.3.6.1.2.1.1.5.0", OCTETS, name)]


def interface_records(count: int, *, in_octets: int = 1000, out_octets: int = 2000, hc: bool = True,
                      speed_bps: int = 100_000_000, octet_type: int | None = None,
                      overrides: dict[str, Record] | None = None) -> list[Record]:
    """ifTable (and ifXTable when ``hc``) rows 1..count, every interface up and equal."""
    records: list[Record] = []
    low_type = COUNTER32
    for i in range(1, count + 1):
        e = "1.3.6.1.2.1.2.2.1"
        records += [(f"{e}.1.{i}", INTEGER, i), (f"{e}.2.{i}", OCTETS, f"port{i}"), (f"{e}.3.{i}", INTEGER, 6),
                    (f"{e}.5.{i}", GAUGE32, min(speed_bps, 2**32 - 1)), (f"{e}.7.{i}", INTEGER, 1),
                    (f"{e}.8.{i}", INTEGER, 1 if i % 2 else 2),
                    (f"{e}.10.{i}", low_type, in_octets % 2**32), (f"{e}.13.{i}", COUNTER32, 0),
                    (f"{e}.14.{i}", COUNTER32, i), (f"{e}.16.{i}", low_type, out_octets % 2**32),
                    (f"{e}.19.{i}", COUNTER32, 0), (f"{e}.20.{i}", COUNTER32, 0)]
        if hc:
            x = "1.3.6.1.2.1.31.1.1.1"
            records += [(f"{x}.1.{i}", OCTETS, f"port{i}"), (f"{x}.6.{i}", octet_type or COUNTER64, in_octets),
                        (f"{x}.10.{i}", COUNTER64, out_octets), (f"{x}.15.{i}", GAUGE32, speed_bps // 1_000_000)]
    if overrides:
        by_oid = {r[0]: r for r in records}
        by_oid.update(overrides)
        records = list(by_oid.values())
    return records


def rewrite(path: Path, records: Iterable[Record]) -> None:
    """Replace a served .snmprec; snmpsim answers from the new one at its next request."""
    old = path.stat().st_mtime if path.exists() else time.time()
    write_snmprec(path, records)
    stamp = max(time.time(), old) + 2  # newer than the old file and than snmpsim's index of it
    os.utime(path, (stamp, stamp))


def context(resources: dict[str, Any], *, timeout: float = 10.0, state: dict[str, Any] | None = None,
            clock: FakeClock | None = None) -> ProbeContext:
    ctx = ProbeContext(timeout=timeout, resources=resources, state=state if state is not None else {})
    if clock is not None:
        ctx.monotonic = clock
    return ctx


async def run_probe(config: TargetConfig, ctx: ProbeContext, round_timeout: float = 10.0) -> ProbeResult:
    """One round through the real runner (timeout, exception -> reason), as the scheduler does it."""
    check = Check(id=f"test/{config.probe}", spec=PROBES[config.probe], config=config, interval=round_timeout * 2,
                  timeout=round_timeout)
    return await run_check(check, ctx)


def close_resources(resources: dict[str, Any]) -> None:
    for resource in resources.values():
        close = getattr(resource, "close", None)
        if callable(close):
            close()
