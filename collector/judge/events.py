"""Verdict changes: what happened in a pass that someone should hear about.

After every pass the judge hands its listeners (the Alertmanager notifier,
tests) the list of changes and the full snapshot. Changes are edges
(``regression``, ``site_silent``, ``on_battery``, ``device_down`` and the
events that clear them); the snapshot is the level, so a listener that missed
an edge (a restart) can still resolve from what is true now.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

KINDS = ("regression", "recovered", "site_silent", "site_reporting", "on_battery", "on_mains",
         "device_down", "device_up")


@dataclass(frozen=True)
class VerdictChange:
    """One edge seen in a pass."""

    site: str
    province: str
    kind: str  # one of KINDS
    at: float
    criterion: str | None = None  # the criterion whose state clears it, when there is one
    check: str | None = None  # the check concerned (device events)
    detail: str = ""  # the reasons in English, for readers of the old field
    criteria: tuple[str, ...] = field(default=())  # every failing criterion (regressions)
    reasons: tuple[dict, ...] = field(default=())  # {"criterion", "code", "params"}: rendered in the reader's language


@dataclass
class Memory:
    """The present-tense facts of the previous pass, to see edges in this one."""

    silent: dict[str, bool] = field(default_factory=dict)
    on_battery: dict[str, bool] = field(default_factory=dict)
    device_up: dict[tuple[str, str], bool] = field(default_factory=dict)


def edges(before: dict[str, bool], now_true: dict[str, bool]) -> tuple[list[str], list[str]]:
    """(keys that became true, keys that became false); unseen keys count as false before."""
    rose = [k for k, v in now_true.items() if v and not before.get(k, False)]
    fell = [k for k, v in now_true.items() if not v and before.get(k, False)]
    return rose, fell


def flags(ids: list[str], values: np.ndarray, known: np.ndarray) -> dict[str, bool]:
    """``{site: bool}`` for the sites where the fact is known."""
    return {ids[i]: bool(values[i]) for i in np.flatnonzero(known)}
