"""A staged rollout of the agent profile: who gets the candidate, and when it halts by itself.

Pure rules, no store: the share of sites is chosen by a hash of the site id
(``bucket``), so a site's place is the same on every replica, at every
evaluation and in every rollout, and widening a rollout from 25 % to 50 % keeps
the first 25 % as canaries. The halt rule compares the sites on the new
version with those on the old one over the same time (the rollout so far), so
a bad evening on the network hits both groups and halts nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

State = Literal["running", "halted", "promoted", "rolled_back"]
OPEN: tuple[State, ...] = ("running", "halted")
BUCKETS = 10_000  # a share is given to 0.01 %


def bucket(site: str) -> int:
    """The site's fixed place in 0..9999: a rollout to p % serves the candidate to the places below p*100."""
    return int.from_bytes(hashlib.sha256(site.encode("utf-8")).digest()[:8], "big") % BUCKETS


def is_canary(site: str, province: str, percent: float, provinces: tuple[str, ...]) -> bool:
    """A site in the chosen provinces (all when none are chosen) whose bucket falls in the share."""
    if provinces and province not in provinces:
        return False
    return bucket(site) < round(percent * BUCKETS / 100)


@dataclass(frozen=True)
class Rollout:
    id: str
    state: State
    base_hash: str
    candidate_name: str
    percent: float
    provinces: tuple[str, ...]
    note: str
    started_by: str
    started_at: float
    ended_at: float | None
    halt_reason: str

    @property
    def open(self) -> bool:
        return self.state in OPEN


@dataclass(frozen=True)
class HaltRule:
    """When the canaries do markedly worse than the rest (fleet.rollout in the collector's settings)."""

    min_results: int = 100  # check results reported on the new version before its failure rate counts
    fail_margin: float = 0.05  # ... halts when it is this much higher (absolute) than the old version's ...
    fail_ratio: float = 2.0  # ... and at least this many times the old version's
    min_sites: int = 3  # canary sites before their reporting rate counts
    silent_margin: float = 0.25  # halts when this larger a share of canaries is silent than of the others


@dataclass(frozen=True)
class Group:
    """One side of the comparison: its check results and its sites' reporting."""

    results: int
    failed: int
    sites: int
    reporting: int

    @property
    def fail_rate(self) -> float | None:
        return self.failed / self.results if self.results else None

    @property
    def reporting_rate(self) -> float | None:
        return self.reporting / self.sites if self.sites else None


def halt_reason(new: Group, old: Group, rule: HaltRule) -> str | None:
    """Why the rollout must halt now, in words with its figures; None while the canaries do as well."""
    new_rate, old_rate = new.fail_rate, old.fail_rate or 0.0
    if new_rate is not None and new.results >= rule.min_results and \
            new_rate - old_rate >= rule.fail_margin and new_rate >= rule.fail_ratio * old_rate:
        return (f"checks on the new version fail {new_rate:.1%} of {new.results} results, on the old "
                f"{old_rate:.1%} of {old.results} (halt at +{rule.fail_margin:.0%} and x{rule.fail_ratio:g})")
    new_silent = 1 - (new.reporting_rate if new.reporting_rate is not None else 1.0)
    old_silent = 1 - (old.reporting_rate if old.reporting_rate is not None else 1.0)
    if new.sites >= rule.min_sites and new_silent - old_silent >= rule.silent_margin:
        return (f"{new.sites - new.reporting} of {new.sites} canary sites stopped reporting ({new_silent:.0%}), "
                f"of the others {old_silent:.0%} (halt at +{rule.silent_margin:.0%})")
    return None
