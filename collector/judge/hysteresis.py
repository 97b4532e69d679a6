"""Hysteresis: ``completed`` only after the criteria held for the stable period.

One step per pass, vectorised over every site (or every site and item):

- criteria failing: ``not_completed`` at once, and the stable clock stops; if
  the last definite state was ``completed`` that is a regression.
- criteria met: the stable clock (``candidate_since``) starts if it was not
  running; once it has run ``stable_period`` the state becomes ``completed``,
  until then the state stays what it was.
- not enough evidence: ``unknown``, never completed; the stable clock is left
  alone, so silence neither resets nor advances a verdict by itself, and a
  site that comes back with its criteria still met is completed again at once.

The windowed statistics are what make one lost ping harmless; this state
machine is what makes a site earn ``completed`` and record losing it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from commune_collector.judge.evaluate import FAILED, MET, UNKNOWN

S_UNKNOWN, S_NOT_COMPLETED, S_COMPLETED = 0, 1, 2
STATE_NAMES = ("unknown", "not_completed", "completed")
STATE_CODES = {name: code for code, name in enumerate(STATE_NAMES)}


@dataclass
class Track:
    """Verdict state of n subjects; ``last_definite`` remembers completed/not_completed across unknown."""

    state: np.ndarray  # int8 S_*
    since: np.ndarray  # float: when the state last changed
    candidate: np.ndarray  # float: when the criteria started holding (NaN: not holding)
    last_definite: np.ndarray  # int8 S_* (S_UNKNOWN: never definite)

    @classmethod
    def fresh(cls, n: int, now: float) -> Track:
        return cls(np.zeros(n, dtype=np.int8), np.full(n, now), np.full(n, np.nan), np.zeros(n, dtype=np.int8))

    def copy(self) -> Track:
        return Track(self.state.copy(), self.since.copy(), self.candidate.copy(), self.last_definite.copy())

    def take(self, index: np.ndarray, now: float) -> Track:
        """Rows by position; -1 gives a fresh row (a site new to the inventory)."""
        out = Track.fresh(len(index), now)
        have = index >= 0
        for name in ("state", "since", "candidate", "last_definite"):
            getattr(out, name)[have] = getattr(self, name)[index[have]]
        return out


@dataclass
class Step:
    track: Track
    changed: np.ndarray  # bool: state differs from before
    regressed: np.ndarray  # bool: fell from completed to not_completed
    recovered: np.ndarray  # bool: became completed after having been not_completed


def step(before: Track, raw: np.ndarray, now: float, stable_period: float,
         held: np.ndarray | None = None) -> Step:
    """Advance every subject by one pass given its raw outcome (MET/FAILED/UNKNOWN).

    ``held`` subjects (declared maintenance, judge/quiet.py) keep their track as it was: no state
    change, no regression, the stable clock neither started nor stopped.
    """
    failed, met, unknown = raw == FAILED, raw == MET, raw == UNKNOWN
    candidate = np.where(failed, np.nan, before.candidate)
    candidate = np.where(met & np.isnan(candidate), now, candidate)
    stable = met & (now - candidate >= stable_period)
    state = np.where(failed, S_NOT_COMPLETED,
                     np.where(unknown, S_UNKNOWN,
                              np.where(stable, S_COMPLETED, before.state))).astype(np.int8)
    # a met site not yet stable keeps its state, but never keeps "unknown" as completed
    if held is not None and held.any():
        state = np.where(held, before.state, state).astype(np.int8)
        candidate = np.where(held, before.candidate, candidate)
    changed = state != before.state
    since = np.where(changed, now, before.since)
    definite = np.where(state != S_UNKNOWN, state, before.last_definite).astype(np.int8)
    was_completed = before.last_definite == S_COMPLETED
    regressed = changed & (state == S_NOT_COMPLETED) & was_completed
    recovered = changed & (state == S_COMPLETED) & (before.last_definite == S_NOT_COMPLETED)
    return Step(Track(state, since, candidate, definite), changed, regressed, recovered)
