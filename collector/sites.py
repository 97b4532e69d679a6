"""The domain type of the inventory: a site, as ``sites import`` reads it and the store keeps it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Site:
    """One commune service center as the inventory describes it."""

    id: str
    name: str
    province: str
    commune: str
    links: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    power: tuple[str, ...] = ()
