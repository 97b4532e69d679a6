"""The fleet view: per site the agent, desired vs applied config (drift), last report, enrollment; per
province the counts. One function builds it for both ``commune-collector fleet`` and ``GET /api/v1/fleet``."""

from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from typing import Any

from commune_collector.fleet.db import FleetDb
from commune_collector.fleet.desired import ProfileSource
from commune_collector.store.base import Store, all_sites


@dataclass(frozen=True)
class FleetRow:
    site: str
    province: str
    name: str
    agent_version: str | None
    instance: str | None
    last_report_at: float | None
    reporting: bool
    clock_offset_s: float | None
    desired_config: str | None
    applied_config: str | None
    on_desired: bool
    config_error: str | None
    duplicate_instance: str | None
    enrolled_at: float | None
    enroll_token: str | None
    spool_reports: int | None = None  # reports the agent had not yet sent, as its last report said
    spool_oldest_age_s: float | None = None  # ... the oldest one's age then
    spool_dropped_reports: int | None = None  # ... what it dropped since it started (a full or too old spool)
    spool_dropped_results: int | None = None


def fleet_rows(store: Store, db: FleetDb, profiles: ProfileSource, now: float, province: str | None = None,
               live_within: float = 900.0, duplicate_window: float = 300.0) -> list[FleetRow]:
    sites = all_sites(store, province)
    status = store.site_status([s.id for s in sites]) if sites else {}
    agents = db.agent_states()
    enrolled = {e.site: e for e in db.enrollments()}  # oldest first: the newest enrollment wins
    rows = []
    for site in sites:
        st, ag, en = status.get(site.id), agents.get(site.id), enrolled.get(site.id)
        desired = profiles.version(site)
        applied = ag.config_version if ag and ag.config_version else None
        dup = ag.other_instance if ag and ag.other_seen_at and now - ag.other_seen_at <= duplicate_window else None
        rows.append(FleetRow(
            site.id, site.province, site.name, st.agent_version if st else None, st.instance if st else None,
            st.last_report_at if st else None, bool(st and now - st.last_report_at <= live_within),
            st.clock_offset_s if st else None, desired, applied, desired is not None and applied == desired,
            (ag.config_error or None) if ag else None, dup or None, en.enrolled_at if en else None,
            en.enroll_token if en else None, *_spool(st)))
    return rows


def _spool(st: Any) -> tuple[int | None, float | None, int | None, int | None]:
    spool = st.spool if st else None
    if spool is None:
        return None, None, None, None
    return spool.reports, spool.oldest_age_s, spool.dropped_reports, spool.dropped_results


def province_counts(rows: list[FleetRow]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    by: dict[str, list[FleetRow]] = defaultdict(list)
    for r in rows:
        by[r.province].append(r)
    for province, items in sorted(by.items()):
        out[province] = {"sites": len(items), "enrolled": sum(r.enrolled_at is not None for r in items),
                         "reporting": sum(r.reporting for r in items),
                         "on_desired_config": sum(r.on_desired for r in items),
                         "config_errors": sum(r.config_error is not None for r in items),
                         "with_backlog": sum(bool(r.spool_reports and r.spool_reports > 1) for r in items),
                         "with_drops": sum(bool(r.spool_dropped_reports or r.spool_dropped_results) for r in items),
                         "agent_versions": dict(Counter(r.agent_version for r in items if r.agent_version))}
    return out


def to_csv(rows: list[FleetRow]) -> str:
    out = io.StringIO()
    fields = list(FleetRow.__dataclass_fields__)
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in asdict(r).items()})
    return out.getvalue()
