"""The ``devices:`` section: the equipment of a commune center, by kind.

An operator lists devices by what they are (a router, a switch, a printer,
a PC or camera that only answers ping, or any SNMP device); each kind expands
into the probes that prove it works, with defaults, so a site is configured
in minutes:

- ``router`` / ``switch``: snmp_system + snmp_interfaces
- ``printer``: snmp_system + printer (status, faults, supplies)
- ``snmp``: snmp_system (+ snmp_get for the ``get:`` OIDs)
- ``ping`` (PCs, kiosks, cameras, the video-conference endpoint): icmp

Every SNMP kind also takes ``get:`` for extra OIDs. ``required`` tells the
collector's judge whether the site counts as equipped without this device.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

from commune_agent.probes.base import TargetConfig, check_interval
from commune_agent.probes.icmp import IcmpConfig
from commune_agent.probes.printer import PrinterConfig
from commune_agent.probes.snmp_get import OidMetric, SnmpGetConfig
from commune_agent.probes.snmp_interfaces import SnmpInterfacesConfig, check_patterns
from commune_agent.probes.snmp_system import SnmpSystemConfig
from commune_agent.snmp.client import DEFAULT_MAX_ROWS
from commune_agent.snmp.settings import SnmpSettings
from commune_common.units import Duration, Host
from commune_common.yamlconf import Loc

DEVICE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeviceBase(_Strict):
    name: str = Field(pattern=DEVICE_NAME, description="unique among the site's devices, e.g. core-switch")
    host: Host
    required: bool = Field(default=True, description="false: the site counts as equipped without it")
    interval: Duration | None = Field(default=None, description="defaults to defaults.interval")
    timeout: Duration | None = Field(default=None, description="defaults to defaults.timeout")

    @field_validator("interval")
    @classmethod
    def _not_too_often(cls, value: float | None) -> float | None:
        return check_interval(value)

    def labels(self) -> dict[str, str]:
        kind = getattr(self, "kind", "device")
        return {"device": self.name, "kind": kind, "target": self.name, "required": "true" if self.required else "false"}

    def probe_configs(self) -> list[TargetConfig]:
        raise NotImplementedError


class SnmpDeviceBase(DeviceBase):
    snmp: SnmpSettings
    get: list[OidMetric] = Field(default_factory=list, description="extra OIDs as metrics (snmp_get)")

    def _snmp(self) -> dict[str, object]:
        return {"name": self.name, "host": self.host, "snmp": self.snmp}

    def _extra(self) -> list[TargetConfig]:
        return [SnmpGetConfig(get=self.get, **self._snmp())] if self.get else []


class InterfaceSelection(_Strict):
    include: list[str] = Field(default_factory=list, description="name regexes to report (anchored); default all")
    exclude: list[str] = Field(default_factory=list, description="name regexes to leave out (anchored)")
    max_rows: int = Field(default=DEFAULT_MAX_ROWS, ge=1, le=1_000_000)

    _compiles = field_validator("include", "exclude")(lambda cls, v: check_patterns(v))


class NetworkDevice(SnmpDeviceBase):
    kind: Literal["router", "switch"]
    interfaces: InterfaceSelection = InterfaceSelection()

    def probe_configs(self) -> list[TargetConfig]:
        return [SnmpSystemConfig(**self._snmp()),
                SnmpInterfacesConfig(include=self.interfaces.include, exclude=self.interfaces.exclude,
                                     max_rows=self.interfaces.max_rows, **self._snmp()),
                *self._extra()]


class PrinterDevice(SnmpDeviceBase):
    kind: Literal["printer"]

    def probe_configs(self) -> list[TargetConfig]:
        return [SnmpSystemConfig(**self._snmp()), PrinterConfig(**self._snmp()), *self._extra()]


class GenericSnmpDevice(SnmpDeviceBase):
    kind: Literal["snmp"]

    def probe_configs(self) -> list[TargetConfig]:
        return [SnmpSystemConfig(**self._snmp()), *self._extra()]


class PingDevice(DeviceBase):
    kind: Literal["ping"]
    role: Literal["pc", "kiosk", "camera", "video_conference", "phone", "other"] = Field(
        default="other", description="what the device is, for the judge (e.g. video_conference)")
    count: int = Field(default=3, ge=1, le=20, description="echo requests per round")

    def labels(self) -> dict[str, str]:
        return super().labels() | {"role": self.role}

    def probe_configs(self) -> list[TargetConfig]:
        return [IcmpConfig(probe="icmp", name=self.name, host=self.host, count=self.count)]


Device = Annotated[Union[NetworkDevice, PrinterDevice, GenericSnmpDevice, PingDevice],  # noqa: UP007
                   Field(discriminator="kind")]


def device_issues(devices: list[NetworkDevice | PrinterDevice | GenericSnmpDevice | PingDevice],
                  interval: float, timeout: float) -> list[tuple[Loc, str]]:
    """Rules across fields and entries, each located at the field to change."""
    issues: list[tuple[Loc, str]] = []
    seen: dict[str, int] = {}
    for i, device in enumerate(devices):
        if device.name in seen:
            issues.append((("devices", i, "name"), f"{device.name!r} is already the name of devices[{seen[device.name]}]"))
        seen.setdefault(device.name, i)
        round_timeout = device.timeout or timeout
        # with neither set, the defaults section is at fault (reported there)
        if round_timeout > (device.interval or interval) and (device.interval or device.timeout):
            issues.append((("devices", i, "timeout"),
                           f"{round_timeout:g}s is longer than the interval {device.interval or interval:g}s"))
        if isinstance(device, SnmpDeviceBase) and device.snmp.request_budget() > round_timeout:
            issues.append((("devices", i, "snmp", "timeout"),
                           f"one request may take {device.snmp.request_budget():g}s (timeout x (retries+1)) "
                           f"but the round's timeout is {round_timeout:g}s; lower snmp.timeout or retries"))
        if isinstance(device, PingDevice):
            echo = device.probe_configs()[0]
            needed = (echo.count - 1) * echo.packet_interval + echo.echo_timeout  # type: ignore[attr-defined]
            if needed > round_timeout:
                issues.append((("devices", i, "count"), f"{device.count} echoes need up to {needed:g}s but the "
                                                        f"timeout is {round_timeout:g}s"))
    return issues
