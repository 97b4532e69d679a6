"""What the API returns, one family per entity (the template's ItemPublic habit)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from commune_common.wire import MAX_SEQ


class AckPublic(BaseModel):
    """The answer to an accepted report: durable once you read it."""

    accepted: int = Field(ge=0, le=MAX_SEQ, description="the report's seq, now durable")
    duplicate: bool = Field(description="true when this report was stored before and is not stored again")
    clock_offset_s: float = Field(description="arrival time (collector clock) minus the agent's sent_at: added to "
                                              "every timestamp of the report")


class ExpectedPublic(BaseModel):
    links: list[str]
    devices: list[str]
    power: list[str]


class SitePublic(BaseModel):
    id: str
    name: str
    province: str
    province_name: str
    commune: str
    expected: ExpectedPublic
    upstream: str | None = Field(default=None, description="what it shares with other communes on the way to "
                                                           "the center (inventory); upstream outages group by it")
    last_report_at: float | None = Field(description="unix seconds, collector clock; null if never reported")
    clock_offset_s: float | None = Field(description="the last report's clock correction: collector arrival time "
                                                     "minus the agent's sent_at, added to its timestamps; positive: "
                                                     "the site's clock is behind")
    clock_suspect: bool = Field(description="the offset is beyond clock.warn_offset (the evidence is corrected anyway)")
    agent_version: str | None


class SitePage(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[SitePublic]


class CheckLatest(BaseModel):
    check: str
    probe: str
    ts: float = Field(description="when the round started, unix seconds, corrected for the site's clock")
    ok: bool
    duration_s: float
    reason: str
    labels: dict[str, str]
    values: dict[str, float]


class SiteDetail(SitePublic):
    instance: str | None
    last_seq: int | None
    latest: list[CheckLatest]


class Health(BaseModel):
    status: str
    detail: str = ""
