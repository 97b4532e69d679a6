"""The verdict API's documents: pydantic schemas (for /openapi.json) and builders from a snapshot.

The JSON routes, the ``report`` command and tests build their documents here,
so every reader of the verdicts sees exactly the same shapes (the contract in
docs/architecture.md, "Judge").
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from commune_collector.judge.verdict import Snapshot

State = Literal["completed", "not_completed", "unknown"]
Status = Literal["completed", "not_completed", "stabilising", "insufficient_evidence", "never_reported"]
STATUS_HELP = ("completed; not_completed (a criterion fails now); stabilising (all criteria hold since "
               "candidate_since, completed at completed_at); insufficient_evidence; never_reported")


class _Doc(BaseModel):
    model_config = ConfigDict(populate_by_name=True)


class Title(_Doc):
    en: str
    vi: str


class CriterionResult(_Doc):
    id: str
    item: str
    title: Title
    required: bool
    met: bool | None = Field(description="null: not enough evidence (unknown)")
    value: float | None = Field(description="the measured statistic, in base units (ratio, seconds)")
    threshold: float
    op: str
    unit: str
    expr: str
    window_s: float | None
    evidence_ts: float | None = Field(description="time of the newest evidence behind the value")
    coverage: float = Field(description="share of the window's expected rounds seen (0-1)")
    reason: str = Field(description="reason_code rendered in the requested language (lang= or Accept-Language; "
                                     "English by default), e.g. 'loss 12.3% over 24h, threshold < 1%'")
    reason_code: str = Field(description="the reason as data: a code of the reason catalogue (data/reasons.yaml)")
    reason_params: dict[str, Any] = Field(description="the code's parameters, numbers in base units")
    checks: list[str]


class Regression(_Doc):
    at: float
    from_: str = Field(alias="from")
    to: str
    cause: list[str]
    detail: str


class UpstreamEventDoc(_Doc):
    """An upstream outage: many communes of one province (or upstream group) lost their path together."""

    key: str
    kind: Literal["province", "group"]
    name: str
    province: str | None
    started_at: float
    sites: int
    reporting: int
    share: float


class MaintenanceDoc(_Doc):
    """Declared maintenance holding the verdict now: neither earned nor lost, its time not counted."""

    window: str = Field(description="the maintenance window's id (GET /api/v1/maintenance/{id})")
    reason: str
    starts_at: float = Field(description="this occurrence as declared (unix time)")
    ends_at: float
    held_until: float = Field(description="the verdict is held until the end of the evidence hour the window "
                                          "ends in")


class SiteVerdict(_Doc):
    site: str
    name: str
    province: str
    commune: str
    state: State
    status: Status = Field(description=STATUS_HELP)
    since: float
    candidate_since: float | None = Field(description="criteria holding since (completed after the stable period)")
    completed_at: float | None = Field(description="stabilising: when it becomes completed if the criteria keep holding")
    evaluated_at: float
    stable_period_s: float
    connectivity: Literal["primary", "backup_only", "down", "unknown"]
    outage_cause: Literal["power", "network", "upstream"] | None
    upstream: UpstreamEventDoc | None = None
    maintenance: MaintenanceDoc | None = None
    on_battery: bool | None
    last_report_at: float | None
    items: dict[str, State]
    item_status: dict[str, Status]
    criteria: list[CriterionResult]
    regressions: list[Regression]


class VerdictPage(_Doc):
    total: int
    limit: int
    offset: int
    items: list[SiteVerdict]


StatusCounts = dict[str, int]


class ItemCount(_Doc):
    completed: int
    total: int
    share: float
    done: bool
    status_counts: StatusCounts = Field(default_factory=dict, description="communes per status for this item")


class ProvinceEntry(_Doc):
    slug: str
    name: str
    total: int
    completed: int
    not_completed: int
    unknown: int
    per_item: dict[str, ItemCount]
    done_items: list[str]
    status_counts: StatusCounts = Field(default_factory=dict, description="communes per status")


class NationalItem(_Doc):
    provinces_done: int
    provinces_total: int
    label: str = Field(description='"29/34"')
    status_counts: StatusCounts = Field(default_factory=dict, description="communes per status for this item")


class National(_Doc):
    provinces_total: int
    per_item: dict[str, NationalItem]
    sites_total: int
    sites_completed: int
    status_counts: StatusCounts = Field(default_factory=dict, description="communes per status, nationally")


class ItemInfo(_Doc):
    id: str
    title: Title
    done_share: float


class Target(_Doc):
    date: str
    kind: Literal["deadline", "milestone"] = Field(description="deadline: days left are counted; milestone: a date "
                                                               "with a meaning, never counted as overdue")
    title: Title


class ProvincesDoc(_Doc):
    evaluated_at: float
    deadline: str | None
    target: Target | None = None
    items: list[ItemInfo]
    provinces: list[ProvinceEntry]
    national: National


class Failing(_Doc):
    id: str
    item: str
    title: Title | None = None
    met: bool | None
    reason: str
    reason_code: str
    reason_params: dict[str, Any]


class Commune(_Doc):
    site: str
    name: str
    commune: str
    state: State
    status: Status
    since: float
    completed_at: float | None
    failing: list[Failing] = Field(description="empty for a site that never reported: that is its one reason")


class ProvinceDetail(ProvinceEntry):
    communes: list[Commune]


class HistoryPoint(_Doc):
    date: str
    completed: int
    not_completed: int
    unknown: int
    total: int
    provinces_done: dict[str, int] = Field(description="national: provinces done per item; one province: 0 or 1")
    items_completed: dict[str, int] = Field(default_factory=dict, description="communes completed per item")


class HistoryDoc(_Doc):
    deadline: str | None
    province: str | None
    series: list[HistoryPoint]


# -- builders -------------------------------------------------------------------------


def verdict_page(snapshot: Snapshot, province: str | None, state: str | None, item: str | None, limit: int,
                 offset: int, status: str | None = None) -> dict:
    chosen = snapshot.select(province=province, state=state, item=item, status=status)
    page = chosen[offset:offset + limit]
    return {"total": int(len(chosen)), "limit": limit, "offset": offset,
            "items": [snapshot.render(int(i)) for i in page]}


def failing_now(snapshot: Snapshot, province: str | None = None) -> list[dict]:
    """Communes not completed now (a criterion fails), each with its province and failing criteria."""
    rows = []
    for i in snapshot.select(province=province, status="not_completed"):
        row = snapshot.commune_row(int(i))
        row["province"] = snapshot.sites.provinces[int(i)]
        rows.append(row)
    return rows


def regressions_since(snapshot: Snapshot, since: float) -> list[dict]:
    """Regressions recorded at or after ``since``, newest first, with the site's name and province."""
    out = []
    for site, shown in snapshot.regressions.items():
        i = snapshot.index_of(site)
        for r in shown:
            if r.get("at", 0) >= since:
                out.append({**r, "site": site, "name": snapshot.sites.names[i] if i is not None else site,
                            "province": snapshot.sites.provinces[i] if i is not None else r.get("province", ""),
                            "status": snapshot.status_of(i) if i is not None else None})
    return sorted(out, key=lambda r: -r["at"])


def province_detail(snapshot: Snapshot, slug: str) -> dict | None:
    rollup = snapshot.rollup.province(slug)
    if rollup is None:
        return None
    communes = [snapshot.commune_row(int(i)) for i in snapshot.select(province=slug)]
    return {**rollup.to_json(), "communes": communes}
