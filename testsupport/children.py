"""Targets for child processes the tests spawn (importable by a ``spawn`` child, unlike a test module)."""

from __future__ import annotations

import os
import signal
import time
from multiprocessing.connection import Connection

from commune_collector.runtime.childproc import stop_on_signals

LIFETIME_S = 120.0  # every child ends by itself: a test that fails never leaves one behind


def deaf_to_sigterm(ready: Connection) -> None:
    """Ignore SIGTERM, say so, and sleep out its lifetime: only SIGKILL ends it early."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    ready.send_bytes(b"ready")
    time.sleep(LIFETIME_S)


def waits_on_stop_signal(ready: Connection) -> None:
    """Wait on ``stop_on_signals`` in a tight loop (the window where a handler setting the event itself
    could deadlock); exit 0 once stopped, 3 if its lifetime ran out first."""
    stop = stop_on_signals()
    ready.send_bytes(b"ready")
    deadline = time.monotonic() + LIFETIME_S
    while not stop.wait(0.0005):
        if time.monotonic() > deadline:
            raise SystemExit(3)


def signalled_inside_its_stop_wait(ready: Connection) -> None:
    """SIGTERM arrives while the main thread holds the stop event's lock, as it does on entering
    ``Event.wait`` (where a judge process was found deadlocked, its handler calling ``Event.set``).
    Exit 0 once the event is set; 3 if its lifetime ran out first."""
    stop = stop_on_signals()
    ready.send_bytes(b"ready")
    with stop._cond:  # type: ignore[attr-defined] # the lock Event.wait holds on entry
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # the handler runs at one of these bytecodes, the lock still held
            pass
    raise SystemExit(0 if stop.wait(LIFETIME_S) else 3)
