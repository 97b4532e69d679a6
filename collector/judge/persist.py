"""What the judge keeps across restarts: verdict state, transitions, daily history.

The hysteresis clock and the "last definite state" must survive a restart,
or every collector upgrade would reset every site's stable period and forget
which sites were completed (and so miss regressions). Transitions keep the
verdicts over time (regressions are the ones from completed to not
completed); the daily history feeds the burn-up chart toward the deadline.
``SqlVerdictStore`` (``commune_collector.store.verdicts``) persists them in the
collector's database; ``MemoryVerdictStore`` here serves tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

ItemState = tuple[int, float, float | None, int]  # state, since, candidate_since, last_definite


@dataclass
class StateRow:
    site: str
    state: int
    since: float
    candidate: float | None
    last_definite: int
    items: dict[str, ItemState] = field(default_factory=dict)


@dataclass
class Transition:
    site: str
    province: str
    at: float
    from_state: str
    to_state: str
    regression: bool
    cause: list[str] = field(default_factory=list)
    detail: str = ""  # the reasons in English, for readers of the old field
    reasons: list[dict] = field(default_factory=list)  # {"criterion", "code", "params"} (judge/reasons.py)

    def to_json(self) -> dict:
        return {"at": self.at, "from": self.from_state, "to": self.to_state, "cause": list(self.cause),
                "detail": self.detail, "reasons": list(self.reasons)}


HistoryRow = tuple[str, str, dict]  # (day, province slug or '' for national, counts)


class VerdictStore(Protocol):
    def load_states(self) -> dict[str, StateRow]:
        """Every site's persisted verdict state."""
        ...

    def save_states(self, rows: list[StateRow], now: float) -> None:
        """Insert or replace these sites' states (one transaction)."""
        ...

    def add_transitions(self, rows: list[Transition]) -> None:
        """Append state changes (regressions flagged)."""
        ...

    def transitions(self, since: float, site: str | None = None, regressions_only: bool = False
                    ) -> list[Transition]:
        """Transitions at or after ``since``, oldest first."""
        ...

    def regression_counts(self) -> dict[str, int]:
        """Regressions recorded per site (within retention)."""
        ...

    def save_history(self, day: str, rows: list[tuple[str, dict]], now: float) -> None:
        """Insert or replace the day's rows (one per province and '' for national)."""
        ...

    def history(self, since_day: str, province: str | None = None) -> list[HistoryRow]:
        """History rows from ``since_day`` on, oldest first; national rows when province is None."""
        ...

    def prune(self, before_ts: float, before_day: str) -> int:
        """Drop transitions older than ``before_ts`` and history before ``before_day``."""
        ...


@dataclass
class MemoryVerdictStore:
    states: dict[str, StateRow] = field(default_factory=dict)
    rows: list[Transition] = field(default_factory=list)
    days: dict[tuple[str, str], dict] = field(default_factory=dict)

    def load_states(self) -> dict[str, StateRow]:
        return dict(self.states)

    def save_states(self, rows: list[StateRow], now: float) -> None:
        for row in rows:
            self.states[row.site] = row

    def add_transitions(self, rows: list[Transition]) -> None:
        self.rows.extend(rows)

    def transitions(self, since: float, site: str | None = None, regressions_only: bool = False
                    ) -> list[Transition]:
        return sorted((t for t in self.rows if t.at >= since and (site is None or t.site == site)
                       and (t.regression or not regressions_only)), key=lambda t: t.at)

    def regression_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.rows:
            if t.regression:
                out[t.site] = out.get(t.site, 0) + 1
        return out

    def save_history(self, day: str, rows: list[tuple[str, dict]], now: float) -> None:
        for province, counts in rows:
            self.days[(day, province)] = counts

    def history(self, since_day: str, province: str | None = None) -> list[HistoryRow]:
        want = province or ""
        return sorted((day, p, counts) for (day, p), counts in self.days.items() if p == want and day >= since_day)

    def prune(self, before_ts: float, before_day: str) -> int:
        before = len(self.rows) + len(self.days)
        self.rows = [t for t in self.rows if t.at >= before_ts]
        self.days = {k: v for k, v in self.days.items() if k[0] >= before_day}
        return before - len(self.rows) - len(self.days)


@dataclass
class ReadOnlyVerdicts:
    """Reads another verdict store, never writes it: for a one-off pass (``report``) beside a running collector."""

    inner: VerdictStore

    def load_states(self) -> dict[str, StateRow]:
        return self.inner.load_states()

    def save_states(self, rows: list[StateRow], now: float) -> None:
        pass

    def add_transitions(self, rows: list[Transition]) -> None:
        pass

    def transitions(self, since: float, site: str | None = None, regressions_only: bool = False
                    ) -> list[Transition]:
        return self.inner.transitions(since, site, regressions_only)

    def regression_counts(self) -> dict[str, int]:
        return self.inner.regression_counts()

    def save_history(self, day: str, rows: list[tuple[str, dict]], now: float) -> None:
        pass

    def history(self, since_day: str, province: str | None = None) -> list[HistoryRow]:
        return self.inner.history(since_day, province)

    def prune(self, before_ts: float, before_day: str) -> int:
        return 0

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if callable(close):
            close()
