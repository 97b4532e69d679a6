"""What a site looks like right now: which link carries it, its power, its devices, its silence.

These are not criteria (criteria judge windows); they are the present tense
the status page and the alerts need. "Up on the backup link only" is its own
connectivity state, and an outage (every link failing, or an agent gone
silent) is labelled a power outage when the site's UPS was on battery at the
time, otherwise a network one. Silence that the collector's own downtime
caused is no silence (``silent_sites``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from commune_collector.judge.matrix import EvidenceMatrix

CONN_UNKNOWN, CONN_PRIMARY, CONN_BACKUP_ONLY, CONN_DOWN = 0, 1, 2, 3
CONNECTIVITY_NAMES = ("unknown", "primary", "backup_only", "down")
CAUSE_NONE, CAUSE_POWER, CAUSE_NETWORK, CAUSE_UPSTREAM = 0, 1, 2, 3
CAUSE_NAMES: tuple[str | None, ...] = (None, "power", "network", "upstream")  # upstream: judge/upstream.py
LINK_PROBES = frozenset({"icmp"})
ON_BATTERY_KEY = "power_on_battery"


def is_link(probe: str, labels: dict[str, str]) -> bool:
    return probe in LINK_PROBES and labels.get("role") in ("primary", "backup")


def is_power(probe: str, labels: dict[str, str]) -> bool:
    return "ups" in labels or probe.startswith("ups")


def is_required_device(probe: str, labels: dict[str, str]) -> bool:
    return "device" in labels and labels.get("required", "false") == "true"


def wanted(probe: str, labels: dict[str, str]) -> bool:
    """Whether the present-tense facts read this check (the matrix keeps it then)."""
    return is_link(probe, labels) or is_power(probe, labels) or is_required_device(probe, labels)


@dataclass
class Facts:
    connectivity: np.ndarray  # int8 CONN_*, per site
    outage_cause: np.ndarray  # int8 CAUSE_*, per site
    on_battery: np.ndarray  # float 1/0, NaN unknown, per site
    silent: np.ndarray  # bool per site: reported before, but not within the silence threshold
    device_rows: np.ndarray  # matrix rows of required devices
    device_site: np.ndarray  # their site index
    device_up: np.ndarray  # int8 1 up, 0 down, -1 unknown
    upstream: np.ndarray | None = None  # int32 per site: index into upstream_events, -1 none
    upstream_events: list[dict] = field(default_factory=list)  # UpstreamEvent.to_json() of this pass


def silent_sites(report_at: np.ndarray, now: float, silence: float, started_at: float, grace: float) -> np.ndarray:
    """Sites that reported before but not within ``silence``, counted from the later of the report and the start.

    Nothing could be heard while the judge (and the collector with it) was down, and the agents
    back off meanwhile: a site whose last report predates the start is silent only when it has
    not reported within ``max(silence, grace)`` of the start.
    """
    reported = np.nan_to_num(report_at, nan=now)
    since = np.maximum(reported, started_at)
    threshold = np.where(reported < started_at, max(silence, grace), silence)
    return ~np.isnan(report_at) & (now - since > threshold)


class FactFinder:
    """Computes Facts for every site from the matrix; caches which rows are links, power, devices."""

    def __init__(self, matrix: EvidenceMatrix):
        self.matrix = matrix
        self._generation = -1
        self._rows: dict[str, np.ndarray] = {}

    def _refresh(self) -> None:
        m = self.matrix
        if m.generation == self._generation:
            return
        kinds: dict[str, list[np.ndarray]] = {"primary": [], "backup": [], "power": [], "device": []}
        for config, rows in m.rows_by_config().items():  # decided once per check configuration
            probe, _, labels = m.configs[config]
            if is_link(probe, labels):
                kinds[labels["role"]].append(rows)
            if is_power(probe, labels):
                kinds["power"].append(rows)
            if is_required_device(probe, labels):
                kinds["device"].append(rows)
        self._rows = {k: np.sort(np.concatenate(v)) if v else np.zeros(0, dtype=np.int64) for k, v in kinds.items()}
        self._generation = m.generation

    def compute(self, n_sites: int, site_of_row: np.ndarray, report_at: np.ndarray, now: float,
                freshness: float, silence: float, started_at: float = -np.inf, grace: float = 0.0) -> Facts:
        self._refresh()
        primary_known, primary_up = self._links("primary", n_sites, site_of_row, now, freshness)
        backup_known, backup_up = self._links("backup", n_sites, site_of_row, now, freshness)
        silent = silent_sites(report_at, now, silence, started_at, grace)
        conn = np.select([primary_up, backup_up, primary_known | backup_known],
                         [CONN_PRIMARY, CONN_BACKUP_ONLY, CONN_DOWN], CONN_UNKNOWN).astype(np.int8)
        conn = np.where(silent & (conn != CONN_DOWN), CONN_UNKNOWN, conn).astype(np.int8)
        on_battery = self._on_battery(n_sites, site_of_row, now, freshness, silence)
        outage = (conn == CONN_DOWN) | silent
        cause = np.where(outage, np.where(on_battery == 1.0, CAUSE_POWER, CAUSE_NETWORK), CAUSE_NONE)
        rows = self._rows["device"]
        rows = rows[site_of_row[rows] >= 0] if len(rows) else rows
        ts, ok = self.matrix.newest(rows)
        fresh = ts >= now - freshness
        device_up = np.where(fresh, np.where(ok, 1, 0), -1).astype(np.int8)
        return Facts(conn, cause.astype(np.int8), on_battery, silent, rows, site_of_row[rows], device_up)

    def _links(self, role: str, n: int, site_of_row: np.ndarray, now: float, freshness: float
               ) -> tuple[np.ndarray, np.ndarray]:
        rows = self._rows[role]
        known, up = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        if not len(rows):
            return known, up
        sites = site_of_row[rows]
        inside = sites >= 0
        ts, ok = self.matrix.newest(rows[inside])
        fresh = ts >= now - freshness
        known[sites[inside][fresh]] = True
        up[sites[inside][fresh & ok]] = True
        return known, up

    def _on_battery(self, n: int, site_of_row: np.ndarray, now: float, freshness: float,
                    silence: float) -> np.ndarray:
        """1 when a UPS of the site last said on battery, 0 on mains, NaN unknown.

        A silent site keeps its last reading (within the silence plus freshness),
        which is what tells a power outage from a network one.
        """
        out = np.full(n, np.nan)
        rows = self._rows["power"]
        if not len(rows):
            return out
        sites = site_of_row[rows]
        inside = sites >= 0
        value, when = self.matrix.newest_value(rows[inside], ON_BATTERY_KEY)
        recent = when >= now - max(freshness, silence) - 86400.0  # the last reading before an outage
        sites, value = sites[inside][recent], value[recent]
        np.fmax.at(out, sites, value)
        return out
