"""``config/criteria.yaml``: the readiness items and the criteria that decide them.

Criteria are data, not code (docs/architecture.md, "Judge"): each names the checks
it reads (``select`` by probe and check labels), one expression such as
``availability(24h) >= 99%`` and the readiness item it belongs to. Every
mistake is refused at load with the file, line and field, like every other
config file of the project (``commune_common.yamlconf``).
"""

from __future__ import annotations

import datetime as dt
import re
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, field_validator

from commune_collector.judge.expr import ExprError, Expression, parse_expression
from commune_common.units import Duration, format_duration
from commune_common.yamlconf import Loc, LocatedChecks, load_model, parse_model

SLUG = r"^[a-z0-9][a-z0-9_-]{0,62}$"
_SELECT_KEY = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def _parse_expr(value: object) -> Expression:
    if isinstance(value, Expression):
        return value
    if not isinstance(value, str):
        raise ValueError("must be a string such as 'availability(24h) >= 99%'")
    try:
        return parse_expression(value)
    except ExprError as exc:
        raise ValueError(str(exc)) from None


def _parse_ratio(value: object) -> float:
    """``0.95`` or ``'95%'`` -> 0.95."""
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            value = float(value.strip()[:-1]) / 100.0
        except ValueError:
            raise ValueError("is not a share (write 95% or 0.95)") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("is not a share (write 95% or 0.95)")
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError("must be between 0 and 1 (or 0% and 100%)")
    return float(value)


ExprField = Annotated[Expression, BeforeValidator(_parse_expr), PlainSerializer(lambda e: e.text, return_type=str)]
Ratio = Annotated[float, BeforeValidator(_parse_ratio)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class Title(Strict):
    """A name shown to people, in English and Vietnamese."""

    en: str = Field(min_length=1)
    vi: str = Field(min_length=1)


class Item(Strict):
    """A readiness item as the national meetings count it (network, power, ...)."""

    title: Title
    done_share: Ratio = Field(default=1.0, description="share of its communes completed for a province to count as done")


class Target(Strict):
    """A date the meetings measure progress against, and what it means.

    ``deadline``: every site should be completed by then; pages count the days
    left (or overdue) and the pace needed. ``milestone``: a date that already
    means something (the go-live of the two-level local government); pages
    show it as a date with its meaning, never as a debt growing every day.
    """

    date: dt.date
    kind: Literal["deadline", "milestone"] = "deadline"
    title: Title = Field(description="what the date means, shown beside it")


class Criterion(Strict):
    id: str = Field(pattern=SLUG, description="stable id, used in the API, metrics and alerts")
    item: str = Field(description="the readiness item it decides (a key of items:)")
    title: Title
    required: bool = Field(default=True, description="whether the site verdict needs it; all count for their item")
    select: dict[str, str | list[str]] = Field(
        default_factory=dict, description="which checks: probe, check id or check labels; '*' globs, lists mean any")
    match: Literal["each", "any"] = Field(default="each", description="every selected check must hold, or one")
    expr: ExprField
    min_coverage: Ratio | None = Field(default=None, description="overrides the file's min_coverage")
    label: str | None = Field(default=None, description="how reasons name the measured value, e.g. 'loss'")

    @field_validator("select")
    @classmethod
    def _select_keys(cls, value: dict[str, str | list[str]]) -> dict[str, str | list[str]]:
        for key, wanted in value.items():
            if not _SELECT_KEY.match(str(key)):
                raise ValueError(f"{key!r} is not a label name")
            if isinstance(wanted, list) and not wanted:
                raise ValueError(f"{key}: an empty list selects nothing")
        return value

    def selects(self, probe: str, check: str, labels: dict[str, str]) -> bool:
        """Whether a check is one this criterion reads."""
        for key, wanted in self.select.items():
            actual = probe if key == "probe" else check if key == "check" else labels.get(key)
            if actual is None:
                return False
            options = wanted if isinstance(wanted, list) else [wanted]
            if not any(fnmatchcase(actual, str(option)) for option in options):
                return False
        return True

    @property
    def scope(self) -> str:
        return self.expr.statistic.scope


class UpstreamSettings(Strict):
    """When many communes of one province (or upstream group) lose their path together: judge/upstream.py."""

    min_share: Ratio = Field(default=0.3, description="share of the group's reporting communes that must lose "
                                                        "their path together")
    min_sites: int = Field(default=5, ge=1, description="and at least this many communes")
    within: Duration = Field(default=300.0, description="how close in time their losses must be")
    counts: bool = Field(default=True, description=(
        "whether a commune's time inside an upstream outage counts against its readiness. Default true: "
        "readiness is whether the commune's services reach the center, and during a backbone cut they do not, "
        "whoever is to blame (the outage is labelled upstream on the page and in alerts). false judges the "
        "commune's own link and equipment only: that time is left out like declared maintenance"))


class CriteriaConfig(LocatedChecks, Strict):
    stable_period: Duration = Field(default=3600.0, description="criteria must hold this long before 'completed'")
    min_coverage: Ratio = Field(default=0.5, description="share of a window's expected rounds needed for a verdict")
    expected_interval: Duration = Field(default=30.0, description="round interval assumed before one is measured")
    silent_after: Duration | None = Field(
        default=None, description="a site silent this long raises site_silent; default: the report_age threshold, else 90s")
    restart_grace: Duration = Field(
        default=330.0, description="after the judge starts, how long a site that last reported before it may take "
                                   "to report again before it counts as silent: the agents' longest push backoff "
                                   "(backoff_max, 5m) plus one push interval, since they back off while the "
                                   "collector is down")
    deadline: dt.date | None = Field(default=None, description="the date every site should be completed by")
    target: Target | None = Field(default=None, description="the date shown on the pages, with its meaning; "
                                                           "kind: deadline also sets deadline")
    history_retention: Duration = Field(default=35 * 86400.0, description="how long daily verdict history is kept")
    upstream: UpstreamSettings = Field(default_factory=UpstreamSettings,
                                       description="telling an upstream outage from commune outages")
    items: dict[str, Item] = Field(min_length=1)
    criteria: list[Criterion] = Field(min_length=1)

    def located_issues(self) -> list[tuple[Loc, str]]:
        issues: list[tuple[Loc, str]] = []
        for key in self.items:
            if not re.match(SLUG, key):
                issues.append((("items", key), f"{key!r} is not an id (lower-case letters, digits, - and _)"))
        seen: dict[str, int] = {}
        for i, crit in enumerate(self.criteria):
            issues += self._criterion_issues(i, crit, seen)
        used = {c.item for c in self.criteria}
        for key in self.items:
            if key not in used:
                issues.append((("items", key), "no criterion decides this item; add one or remove the item"))
        if self.stable_period < 0:
            issues.append((("stable_period",), "must not be negative"))
        if self.history_retention < 86400:
            issues.append((("history_retention",), "must be at least 1d (history is kept per day)"))
        if self.target is not None and self.target.kind == "deadline" and self.deadline not in (None, self.target.date):
            issues.append((("target", "date"), f"differs from deadline ({self.deadline}); give one of them"))
        if self.expected_interval <= 0:
            issues.append((("expected_interval",), "must be longer than 0s"))
        return issues

    def _criterion_issues(self, i: int, crit: Criterion, seen: dict[str, int]) -> list[tuple[Loc, str]]:
        issues: list[tuple[Loc, str]] = []
        if crit.id in seen:
            issues.append((("criteria", i, "id"), f"{crit.id!r} is already the id of criteria[{seen[crit.id]}]"))
        seen.setdefault(crit.id, i)
        if crit.item not in self.items:
            known = ", ".join(sorted(self.items))
            issues.append((("criteria", i, "item"), f"unknown item {crit.item!r} (items: {known})"))
        stat = crit.expr.statistic
        if stat.scope == "check" and not crit.select:
            issues.append((("criteria", i, "select"),
                           f"{stat.name}() reads checks: say which, e.g. select: {{probe: icmp, role: primary}}"))
        if stat.scope == "site" and crit.select:
            issues.append((("criteria", i, "select"), f"{stat.name}() is about the whole site; remove select"))
        return issues

    # -- derived ---------------------------------------------------------------

    @property
    def due_date(self) -> dt.date | None:
        """The date sites should be completed by: ``deadline``, or a ``target`` of kind deadline."""
        if self.deadline is not None:
            return self.deadline
        return self.target.date if self.target is not None and self.target.kind == "deadline" else None

    @property
    def max_window(self) -> float:
        return max((c.expr.window or 0.0) for c in self.criteria) or 3600.0

    @property
    def report_age_threshold(self) -> float | None:
        for crit in self.criteria:
            if crit.expr.stat == "report_age":
                return crit.expr.threshold
        return None

    @property
    def silence_threshold(self) -> float:
        return self.silent_after or self.report_age_threshold or 90.0

    def describe(self) -> str:
        return (f"{len(self.criteria)} criteria over {len(self.items)} items, stable period "
                f"{format_duration(self.stable_period)}")


def load_criteria(path: str | Path) -> CriteriaConfig:
    """Load and validate a criteria file; raises ConfigError with file:line field messages."""
    return load_model(CriteriaConfig, path)


def parse_criteria(text: str, filename: str = "<string>") -> CriteriaConfig:
    return parse_model(CriteriaConfig, text, filename)


DEFAULT_CRITERIA = Path(__file__).resolve().parents[1] / "data" / "criteria.yaml"  # shipped in the wheel; config/criteria.yaml links here
