"""A UPS through Network UPS Tools: ``LIST VAR`` from upsd, normalized to the power view.

NUT already speaks to hundreds of UPS models over USB and serial; at a site
where the UPS hangs off a PC by USB, upsd on that PC is the source. ups.status
is a list of tokens (``OL``, ``OB DISCHRG``, ``OL CHRG LB``, ``RB``, ...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from commune_agent.power.config import PowerConfig
from commune_agent.power.nut import NutClient, NutError
from commune_agent.power.reading import POWER_METRICS, PowerReading, ratio
from commune_agent.probes.base import ProbeContext, ProbeResult, ProbeSpec
from commune_agent.snmp.settings import ENV_NAME, read_secret
from commune_common.units import Host


class UpsNutConfig(PowerConfig):
    probe: Literal["ups_nut"] = "ups_nut"
    source: Literal["nut"]
    host: Host = Field(default="127.0.0.1", description="where upsd listens")
    port: int = Field(default=3493, ge=1, le=65535)
    ups: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$", description="the UPS name in upsd (upsc -l)")
    username: str | None = Field(default=None, min_length=1, max_length=64)
    password: SecretStr | None = Field(default=None, description="inline (discouraged: use _file or _env)")
    password_file: Path | None = None
    password_env: str | None = Field(default=None, pattern=ENV_NAME)

    @model_validator(mode="after")
    def _login_complete(self) -> UpsNutConfig:
        passwords = sum(v is not None for v in (self.password, self.password_file, self.password_env))
        if passwords > 1:
            raise ValueError("give the NUT password once: password_file, password_env or password")
        if bool(self.username) != bool(passwords):
            raise ValueError("username and a password (password_file, password_env or password) go together")
        return self


def _number(values: dict[str, str], name: str) -> float | None:
    text = values.get(name)
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        raise NutError(f"NUT variable {name} is not a number: {text[:40]!r}") from None


def reading_from(values: dict[str, str], ups: str) -> PowerReading:
    """Map NUT variables onto the normalized reading."""
    status = values.get("ups.status")
    if status is None:
        raise NutError(f"upsd reports no ups.status for {ups}: is its driver running?")
    tokens = set(status.split())
    return PowerReading(
        on_battery="OB" in tokens,
        charge_ratio=ratio(_number(values, "battery.charge")),
        runtime_seconds=_number(values, "battery.runtime"),
        input_voltage_volts=_number(values, "input.voltage"),
        low_battery="LB" in tokens,
        replace_battery="RB" in tokens,
        load_ratio=ratio(_number(values, "ups.load")),
        status=status,
    )


async def run(cfg: UpsNutConfig, ctx: ProbeContext) -> ProbeResult:
    async with NutClient(cfg.host, cfg.port) as nut:
        if cfg.username:
            password = read_secret("password", cfg.password, cfg.password_file, cfg.password_env) or ""
            await nut.login(cfg.username, password)
        values = await nut.list_vars(cfg.ups)
    reading = reading_from(values, cfg.ups)
    info = {"status": reading.status, "model": " ".join(filter(None, (values.get("device.mfr"),
                                                                      values.get("device.model"))))}
    return ProbeResult(ok=True, samples=reading.samples(), info=info)


SPEC = ProbeSpec(
    kind="ups_nut",
    config=UpsNutConfig,
    run=run,
    summary="UPS through Network UPS Tools (upsd LIST VAR)",
    section="power",
    metrics=POWER_METRICS,
)
