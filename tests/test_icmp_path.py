"""The ICMP path's own machinery: the engine's one schedule, and icmp rounds taking no concurrency slot.

The engine runs on a real ICMP socket against 127.0.0.0/8 (raw here as root,
or an unprivileged ping socket where ``ping_group_range`` allows it). A lost
reply is made by forgetting the echo's sequence number, so the real reply
that then comes back matches nothing. Every wait is for an event, bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Literal

import pytest

from commune_agent.checks import Check
from commune_agent.icmp_engine import IcmpEngine
from commune_agent.probes.base import ProbeContext, ProbeResult, ProbeSpec, TargetConfig
from commune_agent.scheduler import Scheduler
from testsupport.peers._base import require_root


@pytest.fixture
async def engine() -> AsyncIterator[IcmpEngine]:
    require_root("raw ICMP sockets need root")
    engine = IcmpEngine()
    yield engine
    engine.close()


def _drained(engine: IcmpEngine) -> asyncio.Event:
    """Set once the engine's timer has run and left its schedule empty (every entry fallen due)."""
    event = asyncio.Event()
    run_due = engine._run_due

    def spy() -> None:
        run_due()
        if not engine._schedule:
            event.set()

    engine._run_due = spy  # type: ignore[method-assign]
    return event


def _spy_sends(engine: IcmpEngine, after_send) -> list[int]:  # noqa: ANN001
    """Record the index of every echo the engine sends, calling ``after_send(round, index)`` after each."""
    sent: list[int] = []
    send = engine._send

    def spy(rnd, index: int) -> None:  # noqa: ANN001
        send(rnd, index)
        sent.append(index)
        after_send(rnd, index)

    engine._send = spy  # type: ignore[method-assign]
    return sent


async def test_a_lost_reply_leaves_a_gap_and_the_round_ends_at_its_deadline(engine: IcmpEngine) -> None:
    def lose_the_second(rnd, index: int) -> None:  # noqa: ANN001
        if index == 1:  # its reply is on its way (in the socket's queue): forget the sequence number
            del rnd.channel.pending[rnd.seqs[-1]]

    sent = _spy_sends(engine, lose_the_second)
    async with asyncio.timeout(5.0):  # the round's own deadline must end it, long before this
        rtts = await engine.ping("127.0.0.1", socket.AF_INET, 3, 0.02, 0.2)
    assert sent == [0, 1, 2]
    assert rtts[0] is not None and rtts[1] is None and rtts[2] is not None
    assert all(not ch.pending for ch in engine._channels.values())  # nothing of the round left waiting


async def test_a_round_cut_from_outside_sends_nothing_more(engine: IcmpEngine) -> None:
    """The runner's timeout cancels the probe: its later echoes must not go out (nor its deadline fire)."""
    task: asyncio.Task | None = None

    def cut_after_the_third(rnd, index: int) -> None:  # noqa: ANN001
        if index == 2 and task is not None:
            task.cancel()

    sent, drained = _spy_sends(engine, cut_after_the_third), _drained(engine)
    task = asyncio.ensure_future(engine.ping("127.0.0.1", socket.AF_INET, 6, 0.02, 0.2))
    with pytest.raises(asyncio.CancelledError):
        await task
    # the cut round's entries leave the schedule as they fall due; only then could a stray echo go out
    async with asyncio.timeout(5.0):
        await drained.wait()
    assert sent == [0, 1, 2]
    assert all(not ch.pending for ch in engine._channels.values())


async def test_rounds_of_different_pacing_share_one_schedule(engine: IcmpEngine) -> None:
    rounds = await asyncio.gather(engine.ping("127.0.0.2", socket.AF_INET, 4, 0.03, 0.5),
                                  engine.ping("127.0.0.3", socket.AF_INET, 2, 0.08, 0.5),
                                  engine.ping("::1", socket.AF_INET6, 3, 0.0, 0.5),
                                  engine.ping("127.0.0.4", socket.AF_INET, 1, 0.0, 0.5))
    assert [len(r) for r in rounds] == [4, 2, 3, 1]
    assert all(rtt is not None and rtt > 0 for r in rounds for rtt in r)


# ---------------------------------------------------------------- no slot for shared-engine rounds


class GateConfig(TargetConfig):
    probe: Literal["gate"] = "gate"
    opens: bool = False  # True: this round opens the gate; False: it waits for it


def _checks(gate: asyncio.Event, *, opener_needs_slot: bool) -> list[Check]:
    async def run(cfg: GateConfig, ctx: ProbeContext) -> ProbeResult:
        if cfg.opens:
            gate.set()
        else:
            await gate.wait()
        return ProbeResult(ok=True)

    waiter = ProbeSpec(kind="gate", config=GateConfig, run=run)
    opener = ProbeSpec(kind="gate", config=GateConfig, run=run, needs_slot=opener_needs_slot)
    return [Check(id="waiter", spec=waiter, config=GateConfig(), interval=60.0, timeout=0.5),
            Check(id="opener", spec=opener, config=GateConfig(opens=True), interval=60.0, timeout=0.5)]


async def test_a_round_that_needs_no_slot_runs_while_every_slot_is_taken() -> None:
    """concurrency=1 and the one slot held by a round waiting for the other: only a slot-free kind gets in."""
    results = await Scheduler(_checks(asyncio.Event(), opener_needs_slot=False), lambda c, r: None,
                              concurrency=1).run_all_once()
    assert [(c.id, r.ok, r.reason) for c, r in results] == [("waiter", True, ""), ("opener", True, "")]


async def test_a_round_that_needs_a_slot_waits_for_one() -> None:
    results = await Scheduler(_checks(asyncio.Event(), opener_needs_slot=True), lambda c, r: None,
                              concurrency=1).run_all_once()
    assert [(c.id, r.ok, r.reason) for c, r in results] == [("waiter", False, "timed out after 0.5s"),
                                                              ("opener", True, "")]
