"""The judge on /metrics: verdicts per site and criterion, roll-ups, regressions, pass health.

A custom collector computed at scrape time from the latest snapshot (the
registry is injected, nothing global). 10,000 sites times ten criteria is
100,000 samples: the families are built once per snapshot and reused by
every scrape until the next pass.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import numpy as np
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from commune_collector.judge.evaluate import FAILED, MET
from commune_collector.judge.hysteresis import S_COMPLETED, STATE_NAMES
from commune_collector.judge.status import STATUS_NAMES

PREFIX = "commune_"


def _family(name: str, help_text: str, kind: str = "gauge") -> Metric:
    return Metric(PREFIX + name, help_text, kind)


class JudgeMetrics(Collector):
    """Yields the verdict families of the judge's current snapshot."""

    def __init__(self, judge: Any):
        self.judge = judge
        self._cached: tuple[Any, list[Metric]] | None = None

    def collect(self) -> Iterator[Metric]:
        snapshot = self.judge.snapshot
        if snapshot is not None:
            if self._cached is None or self._cached[0] is not snapshot:
                self._cached = (snapshot, list(self._verdict_families(snapshot)))
            yield from self._cached[1]
        yield from self._health()

    def _verdict_families(self, snap: Any) -> Iterator[Metric]:
        sites, provinces = snap.sites.ids, snap.sites.provinces
        verdict = _family("site_verdict", "1 for the site's current verdict state (completed, not_completed, unknown).")
        for site, province, state in zip(sites, provinces, snap.track.state.tolist(), strict=True):
            verdict.add_sample(verdict.name, {"site": site, "province": province, "state": STATE_NAMES[state]}, 1.0)
        yield verdict
        status = _family("site_status", "1 for the site's status: completed, not_completed, stabilising, "
                                        "insufficient_evidence or never_reported.")
        for site, province, code in zip(sites, provinces, snap.status.tolist(), strict=True):
            status.add_sample(status.name, {"site": site, "province": province, "status": STATUS_NAMES[code]}, 1.0)
        yield status
        info = _family("site_info", "1 per inventory site with its names, for dashboards and alerts to join on "
                                    "(names never appear as labels of other families).")
        names, communes, province_names = snap.sites.names, snap.sites.communes, snap.province_names
        for site, province, name, commune in zip(sites, provinces, names, communes, strict=True):
            info.add_sample(info.name, {"site": site, "province": province, "name": name, "commune": commune,
                                        "province_name": province_names.get(province, province)}, 1.0)
        yield info
        met = _family("site_criterion_met", "1 when the criterion holds at the site, 0 when not; absent when unknown.")
        for outcome in snap.outcomes:
            crit = outcome.criterion
            for i in np.flatnonzero((outcome.status == MET) | (outcome.status == FAILED)).tolist():
                met.add_sample(met.name, {"site": sites[i], "province": provinces[i], "criterion": crit.id,
                                          "item": crit.item}, 1.0 if outcome.status[i] == MET else 0.0)
        yield met
        yield from self._rollup_families(snap)
        regressions = _family("site_regressions", "Times the site fell back from completed (within retention).",
                              "counter")
        counts = snap.regression_counts
        for site, province in zip(sites, provinces, strict=True):
            regressions.add_sample(regressions.name + "_total", {"site": site, "province": province},
                                   float(counts.get(site, 0)))
        yield regressions

    def _rollup_families(self, snap: Any) -> Iterator[Metric]:
        rollup = snap.rollup
        completed = _family("province_sites_completed", "Communes completed per province, per item and overall.")
        total = _family("province_sites", "Communes in the province's inventory.")
        done = _family("province_item_done", "1 when the province counts as done for the item.")
        for p in rollup.provinces:
            total.add_sample(total.name, {"province": p.slug}, float(p.total))
            completed.add_sample(completed.name, {"province": p.slug, "item": "overall"}, float(p.completed))
            for item, row in p.per_item.items():
                completed.add_sample(completed.name, {"province": p.slug, "item": item}, float(row["completed"]))
                done.add_sample(done.name, {"province": p.slug, "item": item}, 1.0 if row["done"] else 0.0)
        titles = _family("item_info", "1 per readiness item with its titles (title in Vietnamese, title_en), for "
                                      "dashboard legends to join on.")
        for item, spec in snap.config.items.items():
            titles.add_sample(titles.name, {"item": item, "title": spec.title.vi,
                                            "title_en": spec.title.en}, 1.0)
        yield titles
        national = _family("national_provinces_done", "Provinces done per readiness item (the N of N/34).")
        for item, row in rollup.national["per_item"].items():
            national.add_sample(national.name, {"item": item}, float(row["provinces_done"]))
        national_total = _family("national_provinces", "Provinces counted nationally (34).")
        national_total.add_sample(national_total.name, {}, float(rollup.national["provinces_total"]))
        sites_completed = _family("national_sites_completed", "Communes completed nationally.")
        sites_completed.add_sample(sites_completed.name, {}, float((snap.track.state == S_COMPLETED).sum()))
        by_status = _family("province_sites_by_status", "Communes per province and status (overall).")
        for p in rollup.provinces:
            for name, count in p.status_counts.items():
                by_status.add_sample(by_status.name, {"province": p.slug, "status": name}, float(count))
        national_status = _family("national_sites_by_status", "Communes per status nationally, overall and per item.")
        for name, count in rollup.national.get("status_counts", {}).items():
            national_status.add_sample(national_status.name, {"item": "overall", "status": name}, float(count))
        for item, row in rollup.national["per_item"].items():
            for name, count in row.get("status_counts", {}).items():
                national_status.add_sample(national_status.name, {"item": item, "status": name}, float(count))
        yield from (completed, total, done, national, national_total, sites_completed, by_status, national_status)
        yield from self._deadline(rollup.deadline)
        target = _family("target_timestamp_seconds", "The criteria's target date (midnight, judge's time zone) "
                                                     "by kind: deadline or milestone.")
        if rollup.target:
            tz = getattr(self.judge, "tz", None)
            moment = dt.datetime.combine(dt.date.fromisoformat(rollup.target["date"]), dt.time(), tzinfo=tz or dt.UTC)
            target.add_sample(target.name, {"kind": rollup.target["kind"]}, moment.timestamp())
        yield target

    def _deadline(self, deadline: str | None) -> Iterator[Metric]:
        """The criteria's deadline as unix time (its midnight in the judge's time zone), for "days left" panels."""
        family = _family("deadline_timestamp_seconds", "When every site should be completed (criteria deadline); "
                                                       "absent when none is set.")
        if deadline:
            tz = getattr(self.judge, "tz", None)
            moment = dt.datetime.combine(dt.date.fromisoformat(deadline), dt.time(), tzinfo=tz or dt.UTC)
            family.add_sample(family.name, {}, moment.timestamp())
        yield family

    def _health(self) -> Iterator[Metric]:
        judge = self.judge
        stats = judge.last_stats
        passes = _family("judge_passes", "Judge passes completed.", "counter")
        passes.add_sample(passes.name + "_total", {}, float(judge.passes))
        yield passes
        duration = _family("judge_pass_duration_seconds", "Duration of the last judge pass, by phase.")
        for phase, seconds in stats.seconds.items():
            duration.add_sample(duration.name, {"phase": phase}, seconds)
        yield duration
        last = _family("judge_last_pass_timestamp_seconds", "When the last judge pass judged (its 'now').")
        if judge.passes:
            last.add_sample(last.name, {}, stats.at)
        yield last
        leading = _family("judge_leading", "1 when this collector judges, 0 while another replica holds the "
                                           "judge's lease (standing by).")
        leading.add_sample(leading.name, {}, 0.0 if getattr(judge, "standby", None) else 1.0)
        yield leading
        regressions = _family("judge_regressions", "Regressions recorded since the judge started counting.",
                              "counter")
        regressions.add_sample(regressions.name + "_total", {}, float(judge.regressions_total))
        yield regressions

