"""Reads of what the judge persisted, shared by the in-process ``Judge`` and the server's ``JudgeProxy``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from zoneinfo import ZoneInfo

from commune_collector.judge.criteria import CriteriaConfig
from commune_collector.judge.persist import VerdictStore


class VerdictReads:
    """The burn-up history and the calendar day; needs ``verdicts``, ``config``, ``tz`` and ``clock``."""

    verdicts: VerdictStore
    config: CriteriaConfig
    tz: ZoneInfo
    clock: Callable[[], float]

    def day_of(self, ts: float) -> str:
        """The calendar day of ``ts`` where the meetings happen (Vietnam time by default)."""
        return dt.datetime.fromtimestamp(ts, self.tz).date().isoformat()

    def history(self, province: str | None = None, days: int = 35, now: float | None = None) -> dict:
        """The burn-up series of the API contract (``/api/v1/history``)."""
        now = self.clock() if now is None else now
        since = self.day_of(now - max(days - 1, 0) * 86400.0)
        series = []
        for day, _, counts in self.verdicts.history(since, province):
            items = counts.get("items", {})
            if province:
                done = {k: int(bool(v.get("done"))) for k, v in items.items()}
            else:
                done = {k: int(v.get("provinces_done", 0)) for k, v in items.items()}
            series.append({"date": day, "completed": counts["completed"], "not_completed": counts["not_completed"],
                           "unknown": counts["unknown"], "total": counts["total"], "provinces_done": done,
                           "items_completed": {k: int(v.get("completed", 0)) for k, v in items.items()}})
        deadline = self.config.due_date.isoformat() if self.config.due_date else None
        return {"deadline": deadline, "province": province, "series": series}
