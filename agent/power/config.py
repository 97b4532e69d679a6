"""What every ``power:`` entry shares: a required name and where its label comes from."""

from __future__ import annotations

from pydantic import Field

from commune_agent.probes.base import TargetConfig

POWER_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"


class PowerConfig(TargetConfig):
    """Base of ups_snmp, ups_apc, ups_nut and ups_host configs; ``source`` picks the kind."""

    name: str = Field(pattern=POWER_NAME, description="this power source's name, e.g. main-ups")  # type: ignore[assignment]
    source: str

    def display_name(self) -> str:
        return self.name
