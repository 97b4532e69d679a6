"""Staged rollouts: start, widen, promote, roll back, watch, and halt by itself.

One set of functions serves ``commune-collector rollout ...`` (on the store
directly) and ``/api/v1/rollouts`` (in the collector), so both say the same
thing. A rollout starts from a candidate profile given as a file; the profile
served now (``ProfileSource.baseline``) is kept with it as the old version.
Every site is rendered with both at start: only the sites whose config
changes are touched, each with its old and new version, and the hash of its
id says whether it is a canary.
"""

from __future__ import annotations

import secrets
import threading
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from commune_collector.agentconfig import parse_profile, validation_issues
from commune_collector.fleet.desired import DesiredError, ProfileSource, Serving, config_version
from commune_collector.fleet.rollout import OPEN, Group, HaltRule, Rollout, halt_reason, is_canary
from commune_collector.fleet.rollout_db import Profiles, RolloutDb, RolloutSite
from commune_collector.fleet.settings import RolloutSettings
from commune_collector.provinces import provinces as known_provinces
from commune_collector.sites import Site
from commune_common.yamlconf import ConfigError


class RolloutError(Exception):
    """A request to fix (the message names what); ``status`` is the HTTP answer."""

    def __init__(self, message: str, status: int = 422, field: str = ""):
        super().__init__(message)
        self.status, self.field = status, field


@dataclass(frozen=True)
class Started:
    rollout: Rollout
    touched: int
    canaries: int
    issues: tuple[str, ...]  # what the collector's copy of the agent model says of the new configs


def _check_share(percent: float, provinces: Sequence[str]) -> None:
    if not 0 < percent <= 100:
        raise RolloutError(f"percent {percent:g}: give a share above 0 and at most 100", field="percent")
    unknown = [p for p in provinces if p not in known_provinces()]
    if unknown:
        raise RolloutError(f"unknown province(s) {', '.join(unknown)} (see provinces.csv)", field="provinces")


def _versions(source: ProfileSource, base: Any, candidate: Any, sites: Sequence[Site]
              ) -> tuple[list[tuple[Site, str, str]], list[str], list[str]]:
    """(site, old, new) for each site the candidate changes; render errors of the candidate; model issues."""
    touched, errors, issues = [], [], []
    for site in sites:
        try:
            old = config_version(source.render(base, site))
        except DesiredError:
            continue  # a site the profile served now cannot describe is not served now either
        try:
            config = source.render(candidate, site)
        except DesiredError as exc:
            errors.append(f"{site.id}: {exc}")
            continue
        new = config_version(config)
        if new != old:
            touched.append((site, old, new))
            if not issues:
                issues = [f"{site.id}: {i}" for i in validation_issues(config, site, candidate)]
    return touched, errors, issues


def start(db: RolloutDb, source: ProfileSource, sites: Sequence[Site], candidate_text: str, candidate_name: str,
          percent: float, provinces: Sequence[str], note: str, actor: str, now: float) -> Started:
    """Open a rollout of ``candidate_text`` to ``percent`` of the touched sites (of ``provinces``)."""
    _check_share(percent, provinces)
    current = db.open()
    if current is not None:
        raise RolloutError(f"rollout {current.id} is still {current.state}: promote or roll it back first", 409)
    try:
        candidate = parse_profile(candidate_text, candidate_name)
    except ConfigError as exc:
        raise RolloutError("the candidate profile is invalid: " + "; ".join(str(i) for i in exc.issues[:5]),
                           field="profile") from None
    base = source.baseline()
    touched, errors, issues = _versions(source, base.profile, candidate, sites)
    if errors:
        raise RolloutError(f"the candidate cannot describe {len(errors)} site(s): " + "; ".join(errors[:3]),
                           field="profile")
    if not touched:
        raise RolloutError("the candidate changes no site's config: nothing to roll out", field="profile")
    chosen = tuple(dict.fromkeys(provinces))
    rows = [RolloutSite(s.id, s.province, old, new, is_canary(s.id, s.province, percent, chosen))
            for s, old, new in touched]
    canaries = sum(r.canary for r in rows)
    if not canaries:
        raise RolloutError(f"{percent:g} % of the {len(rows)} sites it changes"
                           + (f" in {', '.join(chosen)}" if chosen else "") + " is no site: give a larger share",
                           field="percent")
    rollout = Rollout(f"ro-{secrets.token_hex(4)}", "running", base.hash, candidate_name, percent, chosen,
                      note, actor, now, None, "")
    db.add(rollout, Profiles(base.text, candidate_text), rows)
    return Started(rollout, len(rows), canaries, tuple(issues[:5]))


def _get(db: RolloutDb, rollout_id: str | None) -> Rollout:
    rollout = db.get(rollout_id) if rollout_id else db.open()
    if rollout is None:
        raise RolloutError(f"no rollout {rollout_id!r}" if rollout_id else "no open rollout", 404)
    return rollout


def promote(db: RolloutDb, rollout_id: str | None, percent: float | None, force: bool, actor: str,
            now: float) -> Rollout:
    """A larger share (``percent`` below 100), or every touched site (the candidate becomes the profile)."""
    rollout = _get(db, rollout_id)
    if percent is not None and percent < 100:
        _check_share(percent, ())
        if rollout.state != "running" or percent <= rollout.percent:
            raise RolloutError(f"rollout {rollout.id} is {rollout.state} at {rollout.percent:g} %: a wider share "
                               "needs a running rollout and a larger percent", 409, "percent")
        more = [s.site for s in db.sites(rollout.id) if is_canary(s.site, s.province, percent, rollout.provinces)]
        if not db.widen(rollout.id, percent, more, now, actor):
            raise RolloutError(f"rollout {rollout.id} changed meanwhile; look again", 409)
        return _get(db, rollout.id)
    states = OPEN if force else ("running",)
    if rollout.state not in states:
        hint = " (it halted by itself: look at `rollout status`, then --force if it must go on)" \
            if rollout.state == "halted" else ""
        raise RolloutError(f"rollout {rollout.id} is {rollout.state}: cannot promote{hint}", 409)
    if not db.move(rollout.id, states, "promoted", now, actor, "every touched site"):
        raise RolloutError(f"rollout {rollout.id} changed meanwhile; look again", 409)
    return _get(db, rollout.id)


def rollback(db: RolloutDb, rollout_id: str | None, reason: str, actor: str, now: float) -> Rollout:
    """End the rollout: every site is served the old version again."""
    rollout = _get(db, rollout_id)
    if not rollout.open or not db.move(rollout.id, OPEN, "rolled_back", now, actor, reason):
        raise RolloutError(f"rollout {rollout.id} is {rollout.state}: nothing to roll back", 409)
    return _get(db, rollout.id)


def serving(db: RolloutDb, source: ProfileSource) -> None:
    """Point ``source`` at what the store says now: the promoted chain and the open rollout, if any."""
    promoted = tuple(db.promoted())
    current = db.open()
    if current is None:
        source.promoted, source.serving = promoted, None
        return
    old = source.serving
    if old is not None and old.rollout_id == current.id:  # the same rollout: reuse the parsed profiles
        base, candidate = old.base, old.candidate
    else:
        texts = db.profiles(current.id)
        base = parse_profile(texts.base, f"<rollout {current.id}: the profile before>")
        candidate = parse_profile(texts.candidate, current.candidate_name)
    canaries = frozenset(s.site for s in db.sites(current.id) if s.canary)
    source.promoted = promoted
    source.serving = Serving(current.id, current.state == "running", base, candidate, canaries)


@dataclass
class Counts:
    """Check results seen since the last flush, per rollout and site: [results_old, failed_old, new, failed_new]."""

    _lock: threading.Lock = field(default_factory=threading.Lock)
    _counts: dict[tuple[str, str], list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0, 0, 0]))
    versions: dict[str, tuple[str, str]] = field(default_factory=dict)  # site -> (old, new) of the open rollout
    rollout_id: str = ""

    def observe(self, site: str, version: str, results: int, failed: int) -> None:
        """A stored report: count its results on the side of the version its agent had applied."""
        pair = self.versions.get(site)
        if pair is None or version not in pair:
            return
        side = 2 if version == pair[1] else 0
        with self._lock:
            c = self._counts[(self.rollout_id, site)]
            c[side] += results
            c[side + 1] += failed

    def drain(self) -> dict[str, dict[str, tuple[int, int, int, int]]]:
        with self._lock:
            counts, self._counts = self._counts, defaultdict(lambda: [0, 0, 0, 0])
        out: dict[str, dict[str, tuple[int, int, int, int]]] = defaultdict(dict)
        for (rollout, site), c in counts.items():
            out[rollout][site] = (c[0], c[1], c[2], c[3])
        return out


def groups(rows: Sequence[RolloutSite], last_reports: dict[str, float], now: float,
           silent_after: float) -> tuple[Group, Group]:
    """(new, old): check results by applied version; sites by whether they are served the candidate."""
    def reporting(sites: list[RolloutSite]) -> int:
        return sum(1 for s in sites if now - last_reports.get(s.site, float("-inf")) <= silent_after)
    canaries = [r for r in rows if r.canary]
    others = [r for r in rows if not r.canary]
    new = Group(sum(r.results_new for r in rows), sum(r.failed_new for r in rows), len(canaries), reporting(canaries))
    old = Group(sum(r.results_old for r in rows), sum(r.failed_old for r in rows), len(others), reporting(others))
    return new, old


def evaluate(db: RolloutDb, settings: RolloutSettings, now: float, rollout: Rollout | None = None) -> str | None:
    """Apply the halt rule to the running rollout; halt it (served the old version again) and say why."""
    rollout = rollout or db.open()
    if rollout is None or rollout.state != "running":
        return None
    new, old = groups(db.sites(rollout.id), db.last_reports(), now, settings.silent_after)
    reason = halt_reason(new, old, settings.rule())
    if reason and db.move(rollout.id, ("running",), "halted", now, "collector", reason):
        return reason
    return None


def _rate(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def status(db: RolloutDb, source: ProfileSource | None, rollout_id: str | None, settings: RolloutSettings,
           now: float) -> dict[str, Any]:
    """The rollout as an operator watches it: adoption, both versions' check failure and reporting rates,
    the halt rule's verdict, its history. The halt rule is applied first (status may halt it)."""
    rollout = _get(db, rollout_id)
    evaluate(db, settings, now, rollout)
    rollout = _get(db, rollout.id)
    rows = db.sites(rollout.id)
    applied = db.applied()
    new, old = groups(rows, db.last_reports(), now, settings.silent_after)
    canaries = [r for r in rows if r.canary]
    adoption = {
        "touched": len(rows), "canaries": len(canaries),
        "canaries_on_new": sum(1 for r in canaries if applied.get(r.site, ("", ""))[0] == r.new_version),
        "canaries_on_old": sum(1 for r in canaries if applied.get(r.site, ("", ""))[0] == r.old_version),
        "others_on_old": sum(1 for r in rows if not r.canary and applied.get(r.site, ("", ""))[0] == r.old_version),
        "others_on_new": sum(1 for r in rows if not r.canary and applied.get(r.site, ("", ""))[0] == r.new_version),
        "apply_errors": sum(1 for r in rows if applied.get(r.site, ("", ""))[1]),
    }
    warnings = []
    if rollout.open and source is not None:
        try:
            moved = source.baseline().hash != rollout.base_hash
        except ConfigError:
            moved = True
        if moved:
            warnings.append("Hồ sơ cấu hình đã thay đổi từ khi bắt đầu (the profile file changed since the rollout "
                            "started: a promote serves the candidate only while the file holds the old profile)")
    rule: HaltRule = settings.rule()
    return {
        "id": rollout.id, "state": rollout.state, "percent": rollout.percent, "provinces": list(rollout.provinces),
        "candidate": rollout.candidate_name, "note": rollout.note, "started_by": rollout.started_by,
        "started_at": rollout.started_at, "ended_at": rollout.ended_at, "halt_reason": rollout.halt_reason or None,
        "adoption": adoption,
        "new": {"results": new.results, "failed": new.failed, "fail_rate": _rate(new.fail_rate), "sites": new.sites,
                "reporting": new.reporting, "reporting_rate": _rate(new.reporting_rate)},
        "old": {"results": old.results, "failed": old.failed, "fail_rate": _rate(old.fail_rate), "sites": old.sites,
                "reporting": old.reporting, "reporting_rate": _rate(old.reporting_rate)},
        "halt_rule": {"min_results": rule.min_results, "fail_margin": rule.fail_margin, "fail_ratio": rule.fail_ratio,
                      "min_sites": rule.min_sites, "silent_after_s": settings.silent_after,
                      "silent_margin": rule.silent_margin},
        "warnings": warnings,
        "history": [{"at": e.at, "actor": e.actor, "action": e.action, "detail": e.detail}
                    for e in db.events(rollout.id)],
    }
