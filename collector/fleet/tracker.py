"""What each site's agent says about its config, and whether two agents push as one site.

Every report carries the config version the agent applied and any apply error
(``commune_common.wire.Report``). The tracker keeps the newest of each site in
memory and writes a site's row only when something an operator would see
changed (version, error, the set of instances pushing), so a report costs no
extra write in the steady state.

Two instances pushing as one site within ``duplicate_window`` (two boxes with
one site's token, a cloned disk) is flagged on the site and counted in a
metric that an alert rule watches. Each collector replica sees the reports it
received; behind a load balancer the flag can take a few reports to appear.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from commune_collector.fleet.db import AgentState, FleetDb
from commune_common.wire import SpoolState


@dataclass
class _Site:
    instance: str
    config_version: str
    config_error: str
    seen: dict[str, float] = field(default_factory=dict)  # instance -> last report received at


class FleetTracker:
    def __init__(self, db: FleetDb, duplicate_window: float):
        self.db = db
        self.window = duplicate_window
        self._sites: dict[str, _Site] = {}
        self._lock = threading.Lock()
        self.enrollments: dict[str, int] = {}  # outcome -> count, for the metric
        self.spools: dict[str, SpoolState] = {}  # site -> its agent's spool as its newest report said
        self._served: dict[str, tuple[str, float]] = {}  # site -> (version served to its agent, first served at)

    def load(self) -> None:
        """Start from what was persisted (versions and errors survive a collector restart)."""
        for site, s in self.db.agent_states().items():
            seen = {s.instance: s.updated_at}
            if s.other_instance and s.other_seen_at is not None:
                seen[s.other_instance] = s.other_seen_at
            self._sites[site] = _Site(s.instance, s.config_version, s.config_error, seen)

    def observe(self, site: str, instance: str, config_version: str, config_error: str,
                received_at: float) -> AgentState | None:
        """Record one accepted report; returns the row to persist when it changed, else None."""
        with self._lock:
            entry = self._sites.get(site)
            before = None if entry is None else (entry.config_version, entry.config_error, self._live(entry, received_at))
            if entry is None:
                entry = self._sites[site] = _Site(instance, config_version, config_error)
            entry.seen[instance] = received_at
            entry.instance, entry.config_version, entry.config_error = instance, config_version, config_error
            for old in [i for i, t in entry.seen.items() if received_at - t > self.window]:
                del entry.seen[old]
            after = (config_version, config_error, self._live(entry, received_at))
            if after == before:
                return None
            return self._row(site, entry, received_at)

    def _live(self, entry: _Site, now: float) -> frozenset[str]:
        return frozenset(i for i, t in entry.seen.items() if now - t <= self.window)

    def _row(self, site: str, entry: _Site, now: float) -> AgentState:
        others = sorted(((t, i) for i, t in entry.seen.items() if i != entry.instance), reverse=True)
        other_at, other = others[0] if others else (None, "")
        return AgentState(site, entry.instance, entry.config_version, entry.config_error, now, other, other_at)

    def state(self, site: str, now: float) -> dict[str, object] | None:
        """The site's agent as the API shows it, with its warnings."""
        with self._lock:
            entry = self._sites.get(site)
            if entry is None:
                return None
            live = sorted(self._live(entry, now))
            return {"instance": entry.instance, "config_version": entry.config_version or None,
                    "config_error": entry.config_error or None, "instances_pushing": live}

    def duplicate_sites(self, now: float) -> dict[str, int]:
        """Sites with more than one instance pushing now -> how many."""
        with self._lock:
            live = {s: len(self._live(e, now)) for s, e in self._sites.items()}
        return {s: n for s, n in sorted(live.items()) if n > 1}

    def error_sites(self) -> list[str]:
        with self._lock:
            return sorted(s for s, e in self._sites.items() if e.config_error)

    def served(self, site: str, version: str, now: float) -> None:
        """The config endpoint served ``version`` to the site's agent: drift is timed from its first serving."""
        with self._lock:
            if self._served.get(site, ("", 0.0))[0] != version:
                self._served[site] = (version, now)

    def drift(self, now: float) -> dict[str, float]:
        """Sites whose agent asked for its config and still runs another one -> seconds since first served.

        Timed from what the agent was served, not from what the profile says, so a site whose agent has
        not asked since the profile changed is not drifting yet (it is silent, and alerted as such)."""
        with self._lock:
            out = {}
            for site, (version, since) in self._served.items():
                entry = self._sites.get(site)
                if entry is not None and entry.config_version and entry.config_version != version:
                    out[site] = max(0.0, now - since)
            return dict(sorted(out.items()))

    def applied(self) -> dict[str, str]:
        with self._lock:
            return {s: e.config_version for s, e in self._sites.items()}


ENROLL_TOKEN_SHOWN_AFTER_EXPIRY = 7 * 86400.0  # an expired token's alert stays this long, then the series goes


class FleetMetrics(Collector):
    """The fleet families on the collector's /metrics, computed at scrape."""

    def __init__(self, tracker: FleetTracker, clock: object):
        self.tracker = tracker
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        now = self.clock()  # type: ignore[operator]
        dup = GaugeMetricFamily("commune_collector_fleet_duplicate_agents",
                                "Agent instances that pushed as this site within fleet.duplicate_window, for sites "
                                "with more than one (two boxes with one site's token); absent otherwise",
                                labels=["site"])
        for site, count in self.tracker.duplicate_sites(now).items():
            dup.add_metric([site], float(count))
        yield dup
        err = GaugeMetricFamily("commune_collector_fleet_config_apply_error",
                                "1 for a site whose agent reports that it could not apply the config served to it "
                                "(it keeps running its last good config); absent otherwise", labels=["site"])
        for site in self.tracker.error_sites():
            err.add_metric([site], 1.0)
        yield err
        drift = GaugeMetricFamily("commune_collector_fleet_config_drift_seconds",
                                  "Seconds since this replica first served the site's agent a config it has still "
                                  "not applied (its reports name another version); absent when they agree",
                                  labels=["site"])
        for site, seconds in self.tracker.drift(now).items():
            drift.add_metric([site], seconds)
        yield drift
        yield from self._spool_families()
        yield from self._enroll_token_families(now)
        enr = CounterMetricFamily("commune_collector_fleet_enrollments",
                                  "Enrollment requests by outcome (enrolled, reenrolled, or why refused)",
                                  labels=["outcome"])
        for outcome, n in sorted(dict(self.tracker.enrollments).items()):
            enr.add_metric([outcome], float(n))
        yield enr

    def _enroll_token_families(self, now: float) -> Iterator[Metric]:
        """Unrevoked enrollment tokens (until a week past their expiry): uses left and expiry, for the alerts
        that warn before a province's installers meet a refused token. Never the secret: the token's id."""
        labels = ["token", "province"]  # province: empty for a token scoped to a list of sites
        left = GaugeMetricFamily("commune_collector_enroll_token_uses_remaining",
                                 "Enrollments an unrevoked enrollment token still allows", labels=labels)
        most = GaugeMetricFamily("commune_collector_enroll_token_uses_max",
                                 "Enrollments the token allowed when it was created", labels=labels)
        expiry = GaugeMetricFamily("commune_collector_enroll_token_expiry_timestamp_seconds",
                                   "When the enrollment token expires (unix time)", labels=labels)
        try:
            tokens = self.tracker.db.list_enroll_tokens()
        except Exception:  # noqa: BLE001 - a scrape never fails for the store: the families stay empty
            tokens = []
        for t in tokens:
            if t.revoked_at is not None or now - t.expires_at > ENROLL_TOKEN_SHOWN_AFTER_EXPIRY:
                continue
            values = [t.id, t.province or ""]
            left.add_metric(values, float(max(0, t.max_uses - t.uses)))
            most.add_metric(values, float(t.max_uses))
            expiry.add_metric(values, t.expires_at)
        yield left
        yield most
        yield expiry

    def _spool_families(self) -> Iterator[Metric]:
        """Each site's agent spool as its newest report to this replica said (newer agents only)."""
        spools = dict(self.tracker.spools)
        families = [
            ("commune_collector_fleet_spool_reports", "Reports the site's agent had not yet had acknowledged "
             "(its own included), as its newest report said; absent for agents that do not say", "reports"),
            ("commune_collector_fleet_spool_oldest_age_seconds", "Age of the oldest of those reports then",
             "oldest_age_s"),
            ("commune_collector_fleet_spool_dropped_results", "Check results the site's agent dropped since it "
             "started (spool full or too old, memory bound), as its newest report said", "dropped_results"),
        ]
        for name, text, attr in families:
            family = GaugeMetricFamily(name, text, labels=["site"])
            for site, spool in sorted(spools.items()):
                family.add_metric([site], float(getattr(spool, attr)))
            yield family
