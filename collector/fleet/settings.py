"""The collector's ``fleet:`` section: where the central agent profile lives and the enrollment bounds."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from commune_collector.fleet.rollout import HaltRule
from commune_common.units import Duration


class RolloutSettings(BaseModel):
    """When a staged rollout halts by itself (collector/fleet/rollout.py, ``halt_reason``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    check_every: Duration = Field(default=15.0, gt=0, description="how often the collector re-reads the open "
                                  "rollout and applies the halt rule")
    min_results: int = Field(default=100, ge=1, description="check results on the new version before its "
                             "failure rate may halt the rollout")
    fail_margin: float = Field(default=0.05, gt=0, le=1, description="halt when the new version's check "
                               "failure rate exceeds the old one's by this much (0.05 = 5 points) ...")
    fail_ratio: float = Field(default=2.0, ge=1, description="... and is at least this many times the old one's")
    min_sites: int = Field(default=3, ge=1, description="canary sites before their reporting rate may halt it")
    silent_after: Duration = Field(default=300.0, gt=0, description="a site that has not reported for this "
                                   "long counts as silent")
    silent_margin: float = Field(default=0.25, gt=0, le=1, description="halt when this much larger a share of "
                                 "the canary sites is silent than of the sites on the old version")

    def rule(self) -> HaltRule:
        return HaltRule(self.min_results, self.fail_margin, self.fail_ratio, self.min_sites, self.silent_margin)


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
    rollout: RolloutSettings = Field(default_factory=lambda: RolloutSettings(),
                                     description="staged rollouts: how often they are checked, when one halts")
