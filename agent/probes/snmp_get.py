"""User-declared OIDs: any device nobody foresaw, one metric per OID.

Each entry names the OID, the metric name (exposed as ``commune_<name>``), a
type and static labels. ``gauge`` and ``counter`` need a number (an integer
type, or text that spells a number, as UCD's laLoad does); ``text`` values go
to the round's info, which ``probe-once`` shows. OIDs the device lacks are
reported together in one failed round, with the values that were found.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from commune_agent.probes.base import ProbeContext, ProbeResult, ProbeSpec, Sample, sample
from commune_agent.snmp.client import snmp_client
from commune_agent.snmp.errors import ERRORS_METRIC, counting_errors
from commune_agent.snmp.probe import SnmpProbeConfig
from commune_agent.snmp.values import is_missing, number, text

NUMERIC_OID = r"^\.?[0-2](\.\d{1,10}){1,127}$"
METRIC_NAME = r"^[a-z][a-z0-9_]{0,99}$"
LABEL_NAME = re.compile(r"^[a-z][a-z0-9_]{0,49}$")
# families the agent emits itself, and labels it sets on every sample: a user metric must not collide
RESERVED_PREFIXES = ("snmp_", "power_", "printer_", "host_", "icmp_", "tcp_", "http_", "dns_", "probe_", "agent_")
RESERVED_LABELS = {"site", "check", "probe", "device", "kind", "target", "required", "role", "link", "ups",
                   "source", "le", "quantile"}


class OidMetric(BaseModel):
    """One ``get:`` entry."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    oid: str = Field(description="numeric OID with its instance, e.g. 1.3.6.1.4.1.2021.10.1.5.1")
    name: str = Field(pattern=METRIC_NAME, description="metric name, exposed as commune_<name>")
    type: Literal["gauge", "counter", "text"] = "gauge"
    scale: float = Field(default=1.0, description="multiply the value by this (e.g. 0.01 for hundredths)")
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("oid")
    @classmethod
    def _numeric(cls, oid: str) -> str:
        if not re.match(NUMERIC_OID, oid):
            raise ValueError("is not a numeric OID (MIB names are not loaded): write e.g. 1.3.6.1.2.1.1.3.0")
        return oid

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        if name.startswith(RESERVED_PREFIXES):
            raise ValueError(f"names starting with {', '.join(RESERVED_PREFIXES)} belong to the agent; "
                             "pick another prefix (e.g. the vendor's)")
        return name

    @field_validator("labels")
    @classmethod
    def _label_names(cls, labels: dict[str, str]) -> dict[str, str]:
        for key in labels:
            if not LABEL_NAME.match(key):
                raise ValueError(f"label name {key!r} must be lower-case letters, digits and _")
            if key in RESERVED_LABELS:
                raise ValueError(f"label {key!r} is set by the agent itself; pick another name")
        return labels

    @model_validator(mode="after")
    def _unit_by_type(self) -> OidMetric:
        if self.type == "counter" and not self.name.endswith("_total"):
            raise ValueError(f"a counter's name ends with _total ({self.name}_total)")
        if self.type != "counter" and self.name.endswith("_total"):
            raise ValueError("only counters end with _total; use type: counter or rename")
        return self

    @property
    def clean_oid(self) -> str:
        return self.oid.lstrip(".")


class SnmpGetConfig(SnmpProbeConfig):
    probe: Literal["snmp_get"] = "snmp_get"
    get: list[OidMetric] = Field(min_length=1, max_length=500)

    @model_validator(mode="after")
    def _unique_series(self) -> SnmpGetConfig:
        seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        for entry in self.get:
            key = (entry.name, tuple(sorted(entry.labels.items())))
            if key in seen:
                raise ValueError(f"two get entries make the same series {entry.name}{dict(key[1]) or ''}; "
                                 "give them different labels")
            seen.add(key)
        return self


@counting_errors
async def run(cfg: SnmpGetConfig, ctx: ProbeContext) -> ProbeResult:
    device = cfg.device()
    got = await snmp_client(ctx).get(device, [e.clean_oid for e in cfg.get])
    samples: list[Sample] = []
    info: dict[str, str] = {}
    missing: list[str] = []
    for entry in cfg.get:
        value = got.get(entry.clean_oid)
        if is_missing(value):
            missing.append(entry.clean_oid)
        elif entry.type == "text":
            info[entry.name] = text(entry.clean_oid, value)
        else:
            samples.append(sample(entry.name, number(entry.clean_oid, value) * entry.scale, **entry.labels))
    if missing:
        info["snmp_error"] = "missing"
        return ProbeResult(ok=False, samples=tuple(samples), info=info,
                           reason=f"{device.address} has no value at {', '.join(missing[:5])}"
                                  + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
    return ProbeResult(ok=True, samples=tuple(samples), info=info)


SPEC = ProbeSpec(
    kind="snmp_get",
    config=SnmpGetConfig,
    run=run,
    summary="user-declared OIDs as metrics, for devices nobody foresaw",
    section="device",
    metrics=(ERRORS_METRIC,),
)
