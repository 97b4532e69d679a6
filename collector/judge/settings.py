"""The ``judge:`` section of the collector config: which criteria, how often, in which time zone.

The collector's config model embeds it as ``judge: JudgeSettings = JudgeSettings()``.
The criteria file is loaded while the config is validated, so a broken
criterion stops ``commune-collector serve`` at start with its file and line,
not at the first pass.
"""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

from commune_collector.judge.criteria import DEFAULT_CRITERIA, CriteriaConfig, load_criteria
from commune_common.units import Duration
from commune_common.yamlconf import ConfigError


class JudgeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=True, description="judge in this collector; replicas elect one judge among them")
    process: bool = Field(default=True, description="judge in a child process (a core of its own) rather than a "
                                                    "thread of the server: ingest keeps its latency")
    criteria_file: Path | None = Field(default=None, description="criteria YAML; default the shipped collector/data/criteria.yaml")
    interval: Duration = Field(default=30.0, description="time between judge passes")
    timezone: str = Field(default="Asia/Ho_Chi_Minh", description="where a day starts, for the daily history")
    checkpoint: bool = Field(default=True, description="save the evidence matrix in data_dir: restarts judge in "
                                                        "seconds instead of re-reading a day of evidence")
    checkpoint_interval: Duration = Field(default=600.0, description="how often the checkpoint is saved")
    cold_helper: bool = Field(default=True, description="a cold pass (no usable checkpoint) shares its reading with a "
                                                         "helper process: both cores, half the time")
    hour_packs: bool = Field(default=True, description="pack each closed hour of the checks judged (between passes), "
                                                        "so a cold pass reads arrays instead of a day of rows")
    cold_helper_min_sites: int = Field(default=2000, ge=2, description="smaller fleets read alone: a helper's start "
                                                                        "costs more than it saves")

    @field_validator("criteria_file")
    @classmethod
    def _loads(cls, value: Path | None) -> Path | None:
        path = value or DEFAULT_CRITERIA
        try:
            load_criteria(path)
        except ConfigError as exc:
            raise ValueError(f"is not a valid criteria file: {exc.issues[0]}") from None
        return value

    @field_validator("interval", "checkpoint_interval")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be longer than 0s")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("is not a time zone name (e.g. Asia/Ho_Chi_Minh)") from None
        return value

    def criteria(self) -> CriteriaConfig:
        return load_criteria(self.criteria_file or DEFAULT_CRITERIA)
