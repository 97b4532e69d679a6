"""The five statuses a reader sees, each meaning one thing.

The hysteresis keeps three states (``completed``, ``not_completed``,
``unknown``) because that is what its state machine needs, and the API's
``state`` field keeps them for existing clients. People need finer words:
"unknown" meant a site never installed, too little evidence, and criteria
that hold but are still inside the stable period. ``status`` separates them:

- ``completed``: the criteria held for the stable period;
- ``not_completed``: a criterion fails now;
- ``stabilising``: every criterion holds now, since ``candidate_since``;
  completed at ``candidate_since + stable_period`` if they keep holding;
- ``insufficient_evidence``: the agent reports, but some window has too
  little evidence to judge (the coverage is shown exactly);
- ``never_reported``: no report ever arrived from this site.
"""

from __future__ import annotations

import numpy as np

from commune_collector.judge.evaluate import FAILED, MET
from commune_collector.judge.hysteresis import S_COMPLETED, S_NOT_COMPLETED

ST_COMPLETED, ST_NOT_COMPLETED, ST_STABILISING, ST_INSUFFICIENT, ST_NEVER = 0, 1, 2, 3, 4
STATUS_NAMES = ("completed", "not_completed", "stabilising", "insufficient_evidence", "never_reported")
STATUS_CODES = {name: code for code, name in enumerate(STATUS_NAMES)}
WORST_FIRST = ("not_completed", "never_reported", "insufficient_evidence", "stabilising", "completed")


def raw_from_state(state: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """The pass's raw outcome guessed from a track, for snapshots built without it (met: candidate running)."""
    return np.where(state == S_COMPLETED, MET,
                    np.where(state == S_NOT_COMPLETED, np.where(np.isnan(candidate), FAILED, MET), -1)).astype(np.int8)


def statuses(state: np.ndarray, raw: np.ndarray, report_at: np.ndarray) -> np.ndarray:
    """One status code per subject from its hysteresis state, this pass's raw outcome and its last report."""
    never = np.isnan(report_at)
    return np.select(
        [state == S_COMPLETED, raw == MET, raw == FAILED, never],
        [ST_COMPLETED, ST_STABILISING, ST_NOT_COMPLETED, ST_NEVER],
        ST_INSUFFICIENT).astype(np.int8)
