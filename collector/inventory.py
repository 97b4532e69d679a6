"""The site inventory: which communes exist and what each should have (links, devices, power).

Imported from CSV or YAML. Every row is validated before anything is written,
and every problem is reported with its file and line
(``inventory.csv:17 province: 'ha-nol' is not a known province slug``), so an
import is all or nothing and can be fixed in one go.

CSV columns: ``id,name,province,commune[,links,devices,power,upstream]``; list
columns hold names separated by ``;`` (``fiber;lte``). YAML: ``sites: [{id,
name, province, commune, links: [...], devices: [...], power: [...],
upstream}]``. ``upstream`` names what a group of communes shares on the way
to the center (an aggregation router, one backbone link): the judge finds
upstream outages per group as per province, and maintenance can cover one.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from commune_collector.provinces import provinces
from commune_collector.sites import Site
from commune_common.yamlconf import (
    ConfigError,
    ConfigIssue,
    Loc,
    LocatedChecks,
    issues_from_validation,
    load_yaml,
)

_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
CSV_COLUMNS = ("id", "name", "province", "commune", "links", "devices", "power", "upstream")
REQUIRED_COLUMNS = ("id", "name", "province", "commune")


def _split(value: object) -> object:
    """CSV cells carry lists as ``a;b``; YAML gives real lists."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(";") if part.strip()]
    return [] if value is None else value


def _slug(value: str) -> str:
    if not _SLUG.match(value):
        raise ValueError("must be lower-case letters, digits and dashes, at most 63 (e.g. ha-noi-ba-dinh)")
    return value


def _names(values: list[str]) -> list[str]:
    for value in values:
        if not _NAME.match(value):
            raise ValueError(f"{value!r} is not a name: use lower-case letters, digits, '-', '_' or '.' (e.g. vc-terminal)")
    return values


def _upstream(value: object) -> object:
    if isinstance(value, str) and not value.strip():
        return None
    return value


def _name(value: str | None) -> str | None:
    if value is not None:
        _names([value])
    return value


SiteId = Annotated[str, AfterValidator(_slug)]
UpstreamName = Annotated[str | None, BeforeValidator(_upstream), AfterValidator(_name)]
NameList = Annotated[list[str], BeforeValidator(_split), AfterValidator(_names)]


class SiteIn(BaseModel):
    """One inventory row as written by an operator."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    id: SiteId = Field(description="site id: lower-case letters, digits, dashes")
    name: str = Field(min_length=1, max_length=200)
    province: str
    commune: str = Field(min_length=1, max_length=200)
    links: NameList = []
    devices: NameList = []
    power: NameList = []
    upstream: UpstreamName = Field(default=None, description="the upstream it shares with other communes, "
                                                             "e.g. agg-soc-son (optional)")

    @field_validator("province")
    @classmethod
    def _known_province(cls, value: str) -> str:
        if value not in provinces():
            raise ValueError("is not a province slug (e.g. ha-noi, ho-chi-minh, dak-lak; "
                             "the 34 are in collector/data/provinces.csv)")
        return value

    def to_site(self) -> Site:
        return Site(self.id, self.name, self.province, self.commune, tuple(self.links), tuple(self.devices),
                    tuple(self.power), self.upstream)


class InventoryFile(LocatedChecks, BaseModel):
    model_config = ConfigDict(extra="forbid")

    sites: list[SiteIn] = Field(default_factory=list)

    def located_issues(self) -> list[tuple[Loc, str]]:
        return [(("sites", i, "id"), message) for i, message in _duplicates([s.id for s in self.sites])]


def _duplicates(ids: list[str]) -> list[tuple[int, str]]:
    first: dict[str, int] = {}
    out = []
    for i, site_id in enumerate(ids):
        if site_id in first:
            out.append((i, f"{site_id!r} is already the id of entry {first[site_id] + 1}"))
        first.setdefault(site_id, i)
    return out


def load_inventory(path: str | Path) -> list[Site]:
    """Read and validate an inventory file (.csv, .yaml, .yml); ConfigError lists every problem."""
    filename = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigIssue(filename, None, "", f"cannot read: {exc}")]) from None
    if filename.lower().endswith(".csv"):
        return parse_csv(text, filename)
    if filename.lower().endswith((".yaml", ".yml")):
        return parse_yaml(text, filename)
    raise ConfigError([ConfigIssue(filename, None, "", "unknown format: name the file .csv, .yaml or .yml")])


def parse_yaml(text: str, filename: str = "<yaml>") -> list[Site]:
    data, linemap = load_yaml(text, filename)
    if not isinstance(data, dict):
        raise ConfigError([ConfigIssue(filename, 1, "", "the file must be a mapping with a 'sites' list")])
    try:
        parsed = InventoryFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(issues_from_validation(exc, data, linemap, filename)) from None
    found = parsed.located_issues()
    if found:
        raise ConfigError([ConfigIssue(filename, linemap.line_for(loc), f"sites[{loc[1]}].{loc[2]}", msg)
                           for loc, msg in found])
    return [s.to_site() for s in parsed.sites]


def parse_csv(text: str, filename: str = "<csv>") -> list[Site]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip() for h in (reader.fieldnames or [])]
    issues = _header_issues(header, filename)
    if issues:
        raise ConfigError(issues)
    reader.fieldnames = header
    sites: list[Site] = []
    lines: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
            continue
        issues += _row_issues(row, filename, line, sites, lines)
    if issues:
        raise ConfigError(issues)
    return sites


def _header_issues(header: list[str], filename: str) -> list[ConfigIssue]:
    issues = [ConfigIssue(filename, 1, col, "required column is missing") for col in REQUIRED_COLUMNS
              if col not in header]
    issues += [ConfigIssue(filename, 1, col, f"unknown column (expected {', '.join(CSV_COLUMNS)})")
               for col in header if col not in CSV_COLUMNS]
    return issues


def _row_issues(row: dict[str, Any], filename: str, line: int, sites: list[Site],
                lines: dict[str, int]) -> list[ConfigIssue]:
    if None in row:
        return [ConfigIssue(filename, line, "", f"{len(row[None])} more cells than columns")]
    try:
        site = SiteIn.model_validate({k: v for k, v in row.items() if v is not None}).to_site()
    except ValidationError as exc:
        return [ConfigIssue(filename, line, ".".join(str(p) for p in err["loc"][:1]), _message(err))
                for err in exc.errors()]
    if site.id in lines:
        return [ConfigIssue(filename, line, "id", f"{site.id!r} is already the id on line {lines[site.id]}")]
    lines[site.id] = line
    sites.append(site)
    return []


def _message(err: Any) -> str:
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    if err.get("type") == "missing":
        return "required value is missing"
    if err.get("type") == "string_too_short":
        return "must not be empty"
    value = err.get("input")
    return f"{value!r} {msg}" if isinstance(value, str) and "'" not in msg[:1] else msg


def sites_to_csv(sites: list[Site]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for s in sites:
        writer.writerow([s.id, s.name, s.province, s.commune, ";".join(s.links), ";".join(s.devices),
                         ";".join(s.power), s.upstream or ""])
    return out.getvalue()


def sites_to_yaml(sites: list[Site]) -> str:
    data = {"sites": [{"id": s.id, "name": s.name, "province": s.province, "commune": s.commune,
                       "links": list(s.links), "devices": list(s.devices), "power": list(s.power),
                       **({"upstream": s.upstream} if s.upstream else {})} for s in sites]}
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=120)
