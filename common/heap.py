"""Cyclic garbage collection tuned for long-running processes with a large, stable heap.

CPython's default collects the young generation every 700 net allocations.
In the collector a report's objects live while it waits for its group commit,
so with hundreds in flight most of them are caught alive, promoted, and soon
force a *full* collection, which walks every object the process holds:
inventory, auth cache, per-site metrics, the judge's arrays: each one a
pause for every request in flight (measured in docs/benchmarks.md, "Ingest").
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000  # allocations between young collections (CPython's default: 700)


def freeze_heap() -> None:
    """Take what exists now (modules, configuration, checks, inventory: the process's whole life) out of
    the collector's scans, so a full collection does not walk those objects again, every time, for
    nothing. Frozen objects are still freed by reference counting when they die."""
    gc.freeze()


def settle_heap() -> None:
    """Freeze what is alive now (imports, configuration, inventory) out of the collector's sight, and
    collect young objects less often, so fewer in-flight objects are promoted to the old generation.

    Call once start-up is done. Only a reference cycle among the frozen objects would outlive its
    use, and start-up builds none that die later.
    """
    gc.collect()
    freeze_heap()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
