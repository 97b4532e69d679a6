"""Compare the collector's verdicts with the simulator's ground truth.

The verdict API is read the way an operator's tool would read it (paged
``/api/v1/verdicts``). A site's cause is read from its verdict in a fixed
order: never reported, then declared maintenance, then the present-tense
outage cause (power, upstream, network), then "on battery", then a failing
criterion of the network item.
A site expected completed whose criteria are met but whose stable period is
still running is *pending*, not wrong: the judge is doing what it must; so
is a site whose day of history the simulator has not sent yet (the truth file
says which), unless the collector calls it completed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import httpx

from commune_collector.simulate.fleet import (
    CAUSE_MAINTENANCE,
    CAUSE_NETWORK,
    CAUSE_NEVER,
    CAUSE_NONE,
    CAUSE_POWER,
    KINDS,
)

PAGE = 1000


def cause_of(verdict: dict) -> str:
    if verdict.get("last_report_at") is None:
        return CAUSE_NEVER
    if verdict.get("maintenance"):
        return CAUSE_MAINTENANCE
    outage = verdict.get("outage_cause")
    if outage in ("power", "upstream"):
        return outage
    if verdict.get("on_battery"):
        return CAUSE_POWER
    if outage == "network":
        return CAUSE_NETWORK
    failing = [c for c in verdict.get("criteria", ()) if c.get("met") is False and c.get("item") == "network"]
    return CAUSE_NETWORK if failing else CAUSE_NONE


@dataclass
class Mismatch:
    site: str
    kind: str
    expected: str
    got: str


@dataclass
class CheckResult:
    checked: int = 0
    pending: int = 0
    awaiting_history: int = 0
    false_completed: list[Mismatch] = field(default_factory=list)
    wrong_state: list[Mismatch] = field(default_factory=list)
    wrong_cause: list[Mismatch] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    by_kind: dict[str, Counter] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (self.false_completed or self.wrong_state or self.wrong_cause or self.missing)

    def lines(self) -> list[str]:
        out = [f"{'kind':<16} {'sites':>6} {'right':>6} {'pending':>8} {'wrong':>6}"]
        for kind in KINDS:
            c = self.by_kind.get(kind)
            if c:
                out.append(f"{kind:<16} {c['sites']:>6} {c['right']:>6} {c['pending']:>8} {c['wrong']:>6}")
        out.append(f"{self.checked} sites checked: {len(self.false_completed)} false completed, "
                   f"{len(self.wrong_state)} wrong state, {len(self.wrong_cause)} wrong cause, "
                   f"{self.pending} pending (stable period running), {len(self.missing)} missing from the API")
        if self.awaiting_history:
            out.append(f"{self.awaiting_history} sites not judged yet: the simulator is still sending their "
                       "day of history (counted as pending)")
        for title, rows in (("false completed", self.false_completed), ("wrong state", self.wrong_state),
                            ("wrong cause", self.wrong_cause)):
            for m in rows[:10]:
                out.append(f"  {title}: {m.site} ({m.kind}) expected {m.expected}, got {m.got}")
        return out


def fetch_verdicts(url: str, client: httpx.Client | None = None, token: str | None = None) -> dict[str, dict]:
    """Every site verdict from the collector, by site id (read with an operator's ``token``)."""
    own = client is None
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    client = client or httpx.Client(timeout=30.0, headers=headers)
    try:
        out: dict[str, dict] = {}
        offset = 0
        while True:
            reply = client.get(f"{url.rstrip('/')}/api/v1/verdicts", params={"limit": PAGE, "offset": offset})
            reply.raise_for_status()
            page = reply.json()
            out.update({v["site"]: v for v in page["items"]})
            offset += PAGE
            if offset >= page["total"]:
                return out
    finally:
        if own:
            client.close()


def compare(truth: dict, verdicts: dict[str, dict]) -> CheckResult:
    result = CheckResult()
    for site, expected in truth["sites"].items():
        kind = expected["kind"]
        counter = result.by_kind.setdefault(kind, Counter())
        counter["sites"] += 1
        verdict = verdicts.get(site)
        if verdict is None:
            result.missing.append(site)
            counter["wrong"] += 1
            continue
        result.checked += 1
        state, cause = verdict["state"], cause_of(verdict)
        states = expected["states"]
        if state == "completed" and "completed" not in states:
            result.false_completed.append(Mismatch(site, kind, "/".join(states), state))
            counter["wrong"] += 1
            continue
        if state not in states:
            if not expected.get("history_sent", True):
                result.pending += 1
                result.awaiting_history += 1
                counter["pending"] += 1
                continue
            if "completed" in states and state == "unknown" and verdict.get("candidate_since") is not None:
                result.pending += 1
                counter["pending"] += 1
                continue
            result.wrong_state.append(Mismatch(site, kind, "/".join(states), state))
            counter["wrong"] += 1
            continue
        if cause != expected["cause"]:
            result.wrong_cause.append(Mismatch(site, kind, expected["cause"], cause))
            counter["wrong"] += 1
            continue
        counter["right"] += 1
    return result
