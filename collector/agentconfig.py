"""Each site's agent YAML, generated from the collector's inventory and a profile.

The inventory says *what* a commune center has (links ``fiber;lte``, devices
``router;switch;camera``, power ``ups``); the profile says *how* each of those
names is probed (targets, addresses, SNMP credentials by file). Joining the two
gives a complete ``agent.yaml`` per site, so rolling out 3,321 sites needs no
hand-written config. Every generated config is validated with the agent's own
model before anything is written: a profile mistake is reported once per cause
with the profile's file and line, and no file is written at all.

The token is never written: the config carries ``token_file``, the path where
the site's token (``commune-collector token issue SITE``) is installed.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from jinja2 import StrictUndefined, TemplateError, meta
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from commune_collector.provinces import provinces
from commune_collector.sites import Site
from commune_common.yamlconf import (
    ConfigError,
    ConfigIssue,
    LineMap,
    issues_from_validation,
    load_yaml,
)

Scalar = str | int | float | bool
Fragment = dict[str, Any]
SECTIONS = ("links", "devices", "power")  # inventory list -> profile section of the same name
_env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml: 3,321 files in seconds, not half a minute


_UNREPEATABLE = ("random", "lipsum")  # Jinja's filter and global that give another answer every render


@functools.lru_cache(maxsize=4096)
def _template(source: str) -> tuple[Any, tuple[str, ...] | None]:
    """Each distinct string compiled once, not once per site; with the names it reads (None: never reuse
    its output, it may differ from one render to the next)."""
    names = tuple(sorted(meta.find_undeclared_variables(_env.parse(source))))
    return _env.from_string(source), None if any(w in source for w in _UNREPEATABLE) else names


@functools.lru_cache(maxsize=16384)
def _rendered(source: str, values: tuple[tuple[str, type, Any], ...]) -> str:
    return str(_template(source)[0].render({name: value for name, _, value in values}))


def _fill(source: str, context: dict[str, Any]) -> str:
    """A template's output, reused while the values it reads are the same: most strings of a profile read
    only its vars (``{{ lan }}.1``, ``{{ dc_host }}``), the same for a whole province or country, and a
    Jinja render costs more than the rest of a site's config (``rollout start`` renders every site twice)."""
    template, names = _template(source)
    if names is None or any(name not in context for name in names):
        return str(template.render(context))  # and an unknown name is StrictUndefined's error, as before
    return _rendered(source, tuple((name, type(context[name]), context[name]) for name in names))


class AgentProfile(BaseModel):
    """The profile file: fragments per inventory name plus the values templates may use."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    collector: Fragment = Field(description="the agent's collector: section (url, token_file, ca_file, ...)")
    agent: Fragment = Field(default_factory=dict)
    defaults: Fragment = Field(default_factory=dict)
    host: Fragment = Field(default_factory=dict)
    vars: dict[str, Scalar] = Field(default_factory=dict)
    provinces: dict[str, dict[str, Scalar]] = Field(default_factory=dict)
    sites: dict[str, dict[str, Scalar]] = Field(default_factory=dict)
    links: dict[str, Fragment] = Field(default_factory=dict)
    devices: dict[str, Fragment] = Field(default_factory=dict)
    power: dict[str, Fragment] = Field(default_factory=dict)

    @field_validator("collector")
    @classmethod
    def _no_inline_token(cls, value: Fragment) -> Fragment:
        if "token" in value:
            raise ValueError("never put a token in the profile: use token_file (the agent reads it from there)")
        return value

    @field_validator("provinces")
    @classmethod
    def _known_provinces(cls, value: dict[str, dict[str, Scalar]]) -> dict[str, dict[str, Scalar]]:
        unknown = sorted(set(value) - set(provinces()))
        if unknown:
            raise ValueError(f"unknown province slug(s): {', '.join(unknown)}")
        return value


@dataclass(frozen=True)
class Profile:
    """A validated profile and where each of its keys was written (for error messages)."""

    model: AgentProfile
    filename: str
    lines: LineMap

    def where(self, *loc: str | int) -> str:
        line = self.lines.line_for(loc)
        return f"{self.filename}:{line}" if line else self.filename


def builtin_profile_text() -> str:
    return resources.files("commune_collector.data").joinpath("agent_profile.yaml").read_text(encoding="utf-8")


def load_profile(path: str | Path | None = None) -> Profile:
    """Read a profile (the built-in one when ``path`` is None); ConfigError with file:line."""
    filename = str(path) if path else "<built-in agent_profile.yaml>"
    try:
        text = Path(path).read_text(encoding="utf-8") if path else builtin_profile_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigIssue(filename, None, "", f"cannot read: {exc}")]) from None
    return parse_profile(text, filename)


def parse_profile(text: str, filename: str) -> Profile:
    """A profile from its text (a staged rollout's candidate is kept in the store, not in a file)."""
    data, lines = load_yaml(text, filename)
    if not isinstance(data, dict):
        raise ConfigError([ConfigIssue(filename, 1, "", "the profile must be a YAML mapping")])
    try:
        model = AgentProfile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(issues_from_validation(exc, data, lines, filename)) from None
    return Profile(model, filename, lines)


# -- rendering ----------------------------------------------------------------------------


class _RenderError(Exception):
    def __init__(self, loc: tuple[str | int, ...], message: str):
        super().__init__(message)
        self.loc = loc
        self.message = message


def _render(value: Any, context: dict[str, Any], loc: tuple[str | int, ...]) -> Any:
    """Fill placeholders in every string of a fragment; other values are kept as they are."""
    if isinstance(value, dict):
        return {k: _render(v, context, loc + (k,)) for k, v in value.items()}
    if isinstance(value, list):
        return [_render(v, context, loc + (i,)) for i, v in enumerate(value)]
    if isinstance(value, str) and ("{{" in value or "{%" in value):
        try:
            return _fill(value, context)
        except TemplateError as exc:
            raise _RenderError(loc, f"{value!r}: {exc.message or exc}") from None
    return value


def template_context(profile: AgentProfile, site: Site, overrides: dict[str, Scalar] | None = None) -> dict[str, Any]:
    """What placeholders see: the site's fields, then vars, province vars, site vars, overrides."""
    province = provinces().get(site.province)
    base: dict[str, Any] = {"site": site.id, "province": site.province, "commune": site.commune,
                            "name": site.name, "province_name": province.name if province else site.province}
    context = dict(base)
    layers = (("vars",), profile.vars), (("provinces", site.province), profile.provinces.get(site.province, {})), \
        (("sites", site.id), profile.sites.get(site.id, {})), ((), overrides or {})
    for loc, layer in layers:
        for key, value in layer.items():
            # a var may use the site's own fields (dc.{{ province }}.example), not other vars
            context[key] = _render(value, base, loc + (key,))
    return context


class _MissingFragments(Exception):
    """The inventory names links, devices or power the profile does not describe."""

    def __init__(self, missing: list[tuple[str, str]]):
        super().__init__(", ".join(f"{section}.{item}" for section, item in missing))
        self.missing = missing


def agent_config_for(profile: Profile, site: Site, overrides: dict[str, Scalar] | None = None) -> Fragment:
    """The agent YAML (as a dict) for one site; raises _RenderError or _MissingFragments."""
    p = profile.model
    context = template_context(p, site, overrides)
    data: Fragment = {"site": {"id": site.id, "province": site.province, "commune": site.commune,
                               "name": site.name}}
    for key in ("agent", "defaults", "collector"):
        if getattr(p, key):
            data[key] = _render(getattr(p, key), context, (key,))
    missing: list[tuple[str, str]] = []
    for section in SECTIONS:
        fragments: dict[str, Fragment] = getattr(p, section)
        missing += [(section, item) for item in getattr(site, section) if item not in fragments]
        entries = [_render({"name": item, **fragments[item]}, context, (section, item))
                   for item in getattr(site, section) if item in fragments]
        if entries:
            data[section] = entries
    if p.host:
        data["host"] = _render(p.host, context, ("host",))
    if missing:
        raise _MissingFragments(missing)
    return data


# -- validation with the agent's own model ---------------------------------------------------


def validation_issues(data: Fragment, site: Site, profile: Profile) -> list[ConfigIssue]:
    """Every way ``data`` fails ``commune-agent check-config``, named by the profile key and line behind it."""
    # start-up: the agent's config model loads its whole probe registry (~0.5 s); only agent-config needs it,
    # not the collector's other subcommands that import this module with the CLI
    from commune_agent.config import AgentConfig

    error: ValidationError | None = None
    located: list[tuple[tuple[str | int, ...], str]] = []
    try:
        located = list(AgentConfig.model_validate(data).located_issues())
    except ValidationError as exc:
        error = exc
    if error is None and not located:
        return []  # the usual case: no profile line map, which costs more than the validation itself
    lines, paths = _profile_lines(data, site, profile)
    found = issues_from_validation(error, data, lines, profile.filename) if error is not None else [
        ConfigIssue(profile.filename, lines.line_for(loc), _dotted(loc), msg) for loc, msg in located]
    return [ConfigIssue(i.file, i.line, f"{paths.get(i.path, i.path)} (site {site.id})", i.message) for i in found]


def _profile_lines(data: Fragment, site: Site, profile: Profile) -> tuple[LineMap, dict[str, str]]:
    """For each path of the generated config: the profile line and profile path behind it."""
    lines = LineMap()
    paths: dict[str, str] = {}

    def walk(value: Any, here: tuple[str | int, ...]) -> None:
        source = _profile_loc(site, here)
        if source:
            paths[_dotted(here)] = _dotted(source)
            line = profile.lines.line_for(source)
            if line:
                lines.lines[here] = line
        if isinstance(value, dict):
            for key, child in value.items():
                walk(child, here + (key,))
        elif isinstance(value, list):
            for i, child in enumerate(value):
                walk(child, here + (i,))

    walk(data, ())
    return lines, paths


def _profile_loc(site: Site, loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """Map a path in the generated config back to the profile key it came from (() for the inventory)."""
    if not loc or loc[0] == "site":
        return ()
    if loc[0] in SECTIONS:
        items = getattr(site, str(loc[0]))
        if len(loc) >= 2 and isinstance(loc[1], int) and loc[1] < len(items):
            return (loc[0], items[loc[1]], *loc[2:])
        return (loc[0],)
    return loc


def _dotted(loc: Iterable[str | int]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")


# -- the whole inventory ----------------------------------------------------------------------


HEADER = ("# commune-agent configuration for {site} ({commune}, {province}).\n"
          "# Generated by `commune-collector agent-config` from the collector's inventory and\n"
          "# {profile}; regenerate rather than edit. The site token is NOT in this file:\n"
          "# install it at {token_file} (mode 0600), from `commune-collector token issue {site}`.\n"
          "# Check with: commune-agent check-config THIS_FILE\n")


def render_yaml(data: Fragment, profile: Profile) -> str:
    site = data["site"]
    token_file = (data.get("collector") or {}).get("token_file") or (data.get("collector") or {}).get("token_env")
    header = HEADER.format(site=site["id"], commune=site["commune"], province=site["province"],
                           profile=profile.filename, token_file=token_file or "the token_file path")
    return header + yaml.dump(data, Dumper=_Dumper, allow_unicode=True, sort_keys=False, width=120)


def generate(profile: Profile, sites: list[Site], overrides: dict[str, Scalar] | None = None,
             progress: Callable[[int, int], None] | None = None) -> dict[str, str]:
    """site id -> agent YAML text for every site; ConfigError listing every problem, nothing partial."""
    out: dict[str, str] = {}
    issues: list[ConfigIssue] = []
    for n, site in enumerate(sites, 1):
        if progress:
            progress(n, len(sites))
        try:
            data = agent_config_for(profile, site, overrides)
        except _RenderError as exc:
            issues.append(ConfigIssue(profile.filename, profile.lines.line_for(exc.loc), _dotted(exc.loc),
                                      f"{exc.message} (site {site.id})"))
            continue
        except _MissingFragments as exc:
            issues += [ConfigIssue(profile.filename, profile.lines.line_for((section,)), f"{section}.{item}",
                                   f"the inventory lists {item!r} but the profile does not say how to probe it; "
                                   f"add {section}.{item} (site {site.id})") for section, item in exc.missing]
            continue
        found = validation_issues(data, site, profile)
        if found:
            issues += found
        else:
            out[site.id] = render_yaml(data, profile)
    if issues:
        raise ConfigError(_dedupe(issues))
    return out


def _dedupe(issues: list[ConfigIssue], keep: int = 50) -> list[ConfigIssue]:
    """One line per distinct cause (a profile typo would otherwise repeat for 3,321 sites)."""
    first: dict[tuple[int | None, str], ConfigIssue] = {}
    counts: dict[tuple[int | None, str], int] = {}
    for issue in issues:
        key = (issue.line, issue.message.split(" (site ")[0] + issue.path.split(" (site ")[0])
        first.setdefault(key, issue)
        counts[key] = counts.get(key, 0) + 1
    out = []
    for key, issue in list(first.items())[:keep]:
        more = counts[key] - 1
        out.append(issue if not more else ConfigIssue(issue.file, issue.line, issue.path,
                                                      f"{issue.message} (and {more} more site(s))"))
    return out


def write_all(configs: dict[str, str], out_dir: Path, progress: Callable[[int, int], None] | None = None) -> None:
    """One ``<site>.yaml`` per site, each written whole (temp file + rename)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for n, (site, text) in enumerate(sorted(configs.items()), 1):
        target = out_dir / f"{site}.yaml"
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)
        if progress:
            progress(n, len(configs))


def write_one(text: str, path: str) -> None:
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)
