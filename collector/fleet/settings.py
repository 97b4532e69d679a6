"""The collector's ``fleet:`` section: where the central agent profile lives and the enrollment bounds."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from commune_common.units import Duration


class FleetSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    profile: Path | None = Field(
        default=None, description="the agent profile the served configs are generated from (as `agent-config "
                                  "--profile`); unset: the built-in profile. Re-read when the file changes")
    collector_url: str | None = Field(
        default=None, pattern=r"^https?://",
        description="the collector URL written into served configs (the collector_url var of the profile)")
    live_within: Duration = Field(
        default=900.0, gt=0,
        description="a site whose agent reported this recently has a live agent: a second box enrolling it "
                    "is refused unless the operator allowed re-enrollment")
    duplicate_window: Duration = Field(
        default=300.0, gt=0,
        description="two agent instances pushing as one site within this window raise a warning")
