"""The agent's configuration: one site, its links, devices and power.

Schema, defaults and validation live here (blackbox_exporter's config.go);
unknown keys are refused everywhere. The union of link target kinds is derived
from the probe registry, so a new probe needs no edit here.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from commune_agent.devices import Device, device_issues
from commune_agent.power.section import PowerSource, power_issues
from commune_agent.probes.base import check_interval
from commune_agent.probes.host import HostConfig
from commune_agent.registry import PROBES
from commune_common.provinces import nearest_provinces, province_names, slugify
from commune_common.units import ByteSize, Duration
from commune_common.wire import MAX_CHECK_ID, MAX_LABEL_VALUE
from commune_common.yamlconf import Loc, LocatedChecks, load_model

SLUG = r"^[a-z0-9][a-z0-9-]{0,62}$"
MIN_PUSH_INTERVAL_S = 1.0
MIN_SPOOL_BYTES = 1024 * 1024  # a full batch (max_batch_results 5000) compresses to well under this


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _union_for(section: str) -> object:
    configs = tuple(spec.config for spec in PROBES.values() if spec.section == section)
    if len(configs) == 1:
        return configs[0]
    return Annotated[Union[configs], Field(discriminator="probe")]  # noqa: UP007 - built at run time


LinkTarget = _union_for("link")


class SiteInfo(Strict):
    id: str = Field(description="unique site id, lower-case letters, digits and dashes")
    province: str = Field(description="province slug, as in provinces.csv")
    commune: str = Field(min_length=1, description="commune or ward name, diacritics welcome")
    name: str | None = None

    @field_validator("id")
    @classmethod
    def _site_id(cls, value: str) -> str:
        if re.match(SLUG, value):
            return value
        hint = slugify(value)[:63]
        raise ValueError("is not a site id: an id has only lower-case letters a-z, digits and dashes, starts "
                         "with a letter or digit and is at most 63 characters long"
                         + (f" (did you mean {hint}?)" if re.match(SLUG, hint) else " (e.g. ha-noi-ba-dinh)"))

    @field_validator("province")
    @classmethod
    def _province(cls, value: str) -> str:
        names = province_names()
        if value in names:
            return value
        near = nearest_provinces(value)
        listed = ", ".join(f"{slug} ({names[slug]})" for slug in near)
        raise ValueError("is not one of the 34 province slugs"
                         + (f"; nearest: {listed}" if near else f"; the slugs: {', '.join(names)}"))


class AgentSettings(Strict):
    listen: str = Field(default="127.0.0.1:9469", description="host:port for /metrics")
    concurrency: int = Field(default=256, ge=1, le=10000,
                             description="probe rounds running at once (icmp rounds share one socket: not counted)")
    state_dir: Path = Field(default=Path("/var/lib/commune-agent"))
    jitter: float = Field(default=0.1, ge=0, le=0.5, description="spread of each interval, as a share")
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535 or not host:
            raise ValueError("is not host:port (e.g. 127.0.0.1:9469 or [::]:9469)")
        return value

    def listen_address(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


class Defaults(Strict):
    interval: Duration = 30.0
    timeout: Duration = 10.0

    @field_validator("interval", "timeout")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be longer than 0s")
        return value

    @field_validator("interval")
    @classmethod
    def _not_too_often(cls, value: float) -> float:
        return check_interval(value)  # type: ignore[return-value]


class Link(Strict):
    name: str = Field(pattern=SLUG)
    role: Literal["primary", "backup", "other"] = "primary"
    source_address: str | None = Field(default=None, description="bind probes to this local address")
    interface: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:-]{1,15}$",
                                  description="bind probes to this interface (SO_BINDTODEVICE)")
    targets: list[LinkTarget] = Field(min_length=1)  # type: ignore[valid-type]

    @field_validator("source_address")
    @classmethod
    def _is_ip(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                return str(ipaddress.ip_address(value))
            except ValueError:
                raise ValueError("is not an IP address") from None
        return value


class HostSection(HostConfig):
    enabled: bool = True


class PushSettings(Strict):
    """Where reports are pushed (optional: an agent can serve /metrics alone)."""

    url: str = Field(pattern=r"^https?://", description="collector base URL")
    token_file: Path | None = None
    token_env: str | None = Field(default=None, pattern=r"^[A-Z_][A-Z0-9_]*$")
    ca_file: Path | None = None
    push_interval: Duration = Field(default=30.0, gt=0)
    timeout: Duration = 10.0
    keep_alive: Duration = Field(
        default=60.0, ge=0,
        description="keep the connection to the collector open this long between pushes, so each push reuses "
                    "it (no new TCP and TLS handshake, two round trips less on a slow backup link); shorter "
                    "than the collector's keep_alive (75 s) so that the agent closes first; 0s: a new "
                    "connection every push")
    max_batch_results: int = Field(default=2000, ge=1, le=5000)
    spool_max_bytes: ByteSize = 256 * 1024 * 1024
    spool_max_age: Duration = 7 * 86400.0
    replay_bytes_per_push: ByteSize = 1024 * 1024
    backoff_max: Duration = Field(default=300.0, ge=1, description="longest wait between retries")
    managed: bool = Field(default=False, description=(
        "true: the collector manages this agent's checks (GET /api/v1/agent-config, commune_agent.remote_config); "
        "this file then only says who the site is and how to reach the collector. false: this file is the config"))
    config_poll_interval: Duration = Field(default=300.0, ge=1, description=(
        "managed: ask the collector for a new config this often (jittered by +-20 %)"))

    @field_validator("push_interval")
    @classmethod
    def _push_not_too_often(cls, value: float) -> float:
        if value < MIN_PUSH_INTERVAL_S:
            raise ValueError(f"is too short: each push is a request and a spool write (at least "
                             f"{MIN_PUSH_INTERVAL_S:g}s; 30s is usual)")
        return value

    @field_validator("spool_max_bytes")
    @classmethod
    def _spool_holds_a_batch(cls, value: int) -> int:
        if value < MIN_SPOOL_BYTES:
            raise ValueError(f"is too small: a spool smaller than one batch drops every batch, the newest too "
                             f"(at least {MIN_SPOOL_BYTES // 2**20}MiB; 256MiB is usual)")
        return value

    @model_validator(mode="after")
    def _one_token_source(self) -> PushSettings:
        if (self.token_file is None) == (self.token_env is None):
            raise ValueError("set exactly one of token_file or token_env (the token issued for this site)")
        return self


class AgentConfig(LocatedChecks, Strict):
    site: SiteInfo
    agent: AgentSettings = AgentSettings()
    defaults: Defaults = Defaults()
    links: list[Link] = Field(default_factory=list)
    host: HostSection = HostSection()
    devices: list[Device] = Field(default_factory=list)  # type: ignore[valid-type]
    power: list[PowerSource] = Field(default_factory=list)  # type: ignore[valid-type]
    collector: PushSettings | None = None

    def located_issues(self) -> list[tuple[Loc, str]]:
        """Rules across fields, each located at the field to change."""
        issues: list[tuple[Loc, str]] = []
        if self.defaults.timeout > self.defaults.interval:
            issues.append((("defaults", "timeout"),
                           f"{self.defaults.timeout:g}s is longer than the interval {self.defaults.interval:g}s"))
        seen: dict[str, int] = {}
        for i, link in enumerate(self.links):
            if link.name in seen:
                issues.append((("links", i, "name"), f"{link.name!r} is already the name of links[{seen[link.name]}]"))
            seen.setdefault(link.name, i)
            names: dict[tuple[str, str], int] = {}
            for j, target in enumerate(link.targets):
                key = (target.probe, target.display_name())
                check_id = f"link/{link.name}/{target.probe}/{key[1]}"
                if len(check_id) > MAX_CHECK_ID or len(key[1]) > MAX_LABEL_VALUE:
                    issues.append((("links", i, "targets", j), f"its check id {check_id[:40]!r}... is longer than "
                                   f"{MAX_CHECK_ID} characters; give the target a shorter name"))
                if key in names:  # one check id for two targets: their results would overwrite
                    issues.append((("links", i, "targets", j), f"another {key[0]} target of this link is named "
                                   f"{key[1]!r} (targets[{names[key]}]); give one a distinct name"))
                names.setdefault(key, j)
                problem = _timing_problem(target, self.defaults)
                if problem:
                    issues.append((("links", i, "targets", j, problem[0]), problem[1]))
        host_problem = _timing_problem(self.host, self.defaults)
        if host_problem:
            issues.append((("host", host_problem[0]), host_problem[1]))
        issues += device_issues(self.devices, self.defaults.interval, self.defaults.timeout)
        issues += power_issues(self.power, self.defaults.interval, self.defaults.timeout)
        return issues


def _timing_problem(target: object, defaults: Defaults) -> tuple[str, str] | None:
    interval = getattr(target, "interval", None) or defaults.interval
    timeout = getattr(target, "timeout", None) or defaults.timeout
    own = getattr(target, "interval", None) or getattr(target, "timeout", None)
    if timeout > interval and own:  # with neither set, the defaults section is at fault
        return "timeout", f"{timeout:g}s is longer than the interval {interval:g}s"
    if getattr(target, "probe", "") == "icmp":
        needed = (target.count - 1) * target.packet_interval + target.echo_timeout  # type: ignore[attr-defined]
        if needed > timeout:
            return "count", (f"{target.count} echoes need up to {needed:g}s but the timeout is {timeout:g}s; "  # type: ignore[attr-defined]
                             "raise timeout or lower count, packet_interval or echo_timeout")
    return None


def load_agent_config(path: str | Path) -> AgentConfig:
    """Load and validate; raises common.yamlconf.ConfigError with file:line field messages."""
    return load_model(AgentConfig, path)
