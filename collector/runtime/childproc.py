"""Child processes of the server: the aggregator and the judge each get a core of their own.

Both are CPU-bound Python; in the server's process they would share one GIL
with ingest and stretch its request latency (docs/benchmarks.md, "Ingest").
``supervise`` keeps one such child running for as long as the server runs:
it restarts a child that dies, and stops it with SIGTERM (the child finishes
its work in hand and exits) when the server stops, and kills it (SIGKILL) if it
has not exited within ``STOP_GRACE_S``: the server's stop is bounded, as the
systemd unit's ``TimeoutStopSec`` expects. A child dies with its parent even
when the parent is killed with SIGKILL (``die_with_parent``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Awaitable, Callable
from multiprocessing.process import BaseProcess

from commune_common.heap import settle_heap

log = logging.getLogger("commune_collector")

RESTART_DELAY_S = 5.0
STOP_GRACE_S = 15.0  # SIGTERM to SIGKILL; under deploy/systemd's TimeoutStopSec=30s, beside uvicorn's 10 s
_PR_SET_NAME = 15
_PR_SET_PDEATHSIG = 1

CONTEXT = multiprocessing.get_context("spawn")  # no fork of a process with threads and open databases


def die_with_parent() -> None:
    """Ask the kernel for SIGTERM when the parent dies (Linux ``PR_SET_PDEATHSIG``)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def child_setup(name: str, log_level: str, nice: int = 0) -> threading.Event:
    """What every child does first: take ``name`` (what ps and top show), die with the parent, log like it,
    yield the CPU to the server by ``nice`` steps, turn SIGTERM/SIGINT into an event, and tune garbage
    collection for a long life (``commune_common.heap``)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(_PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)
    die_with_parent()
    logging.basicConfig(level=getattr(logging, log_level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if nice:
        try:
            os.nice(nice)
        except OSError as exc:  # a seccomp filter without setpriority: run at the server's priority
            log.warning("%s: cannot lower its priority by %d (%s)", name, nice, exc.strerror)
    stop = stop_on_signals()
    settle_heap()
    return stop


def stop_on_signals() -> threading.Event:
    """An event set on SIGTERM or SIGINT.

    The handler only writes a byte to a pipe; a thread sets the event. Setting a
    ``threading.Event`` in the handler itself can deadlock: the handler runs in the
    main thread, which may be inside that event's ``wait`` holding its lock.
    """
    stop = threading.Event()
    readable, writable = os.pipe()

    def relay() -> None:
        os.read(readable, 1)
        stop.set()

    threading.Thread(target=relay, name="stop-signal", daemon=True).start()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: os.write(writable, b"x"))
    return stop


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


async def _watch(child: BaseProcess, stop: asyncio.Event) -> None:
    while child.is_alive() and not stop.is_set():
        await _wait(stop, 1.0)


async def stop_child(name: str, child: BaseProcess) -> None:
    """SIGTERM (the child finishes what it holds and exits), then SIGKILL after ``STOP_GRACE_S``."""
    if child.is_alive():
        child.terminate()
    await asyncio.to_thread(child.join, STOP_GRACE_S)
    if child.is_alive():
        log.error("%s process %d did not stop within %.0fs of SIGTERM; killed (the work it held is redone at the "
                  "next start)", name, child.pid, STOP_GRACE_S)
        child.kill()
        await asyncio.to_thread(child.join)


async def supervise(name: str, spawn: Callable[[], BaseProcess], stop: asyncio.Event,
                    attend: Callable[[BaseProcess, asyncio.Event], Awaitable[None]] | None = None) -> None:
    """Keep the process ``spawn()`` makes (not started yet) running until ``stop``.

    ``attend(child, stop)`` runs while the child lives (reading its pipe, say) and
    must return once the child has exited or ``stop`` is set.
    """
    while not stop.is_set():
        child = spawn()
        child.start()
        log.info("%s process %d started", name, child.pid)
        if attend is not None:
            await attend(child, stop)
        await _watch(child, stop)
        if stop.is_set():
            await stop_child(name, child)
            return
        log.error("%s process exited with %s; restarting in %.0fs", name, child.exitcode, RESTART_DELAY_S)
        await _wait(stop, RESTART_DELAY_S)
