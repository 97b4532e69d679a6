"""A contract-shaped verdict source for status-page unit tests (no judge, no store).

Builds SiteVerdict / province / history documents exactly as the verdict API
contract describes them, with a known mix of states, so page tests can assert
numbers they computed themselves. The end-to-end test uses the real judge.
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import commune_collector

ITEMS = [
    ("network", "Primary network link", "Đường truyền chính"),
    ("backup_link", "Backup link", "Đường truyền dự phòng"),
    ("power", "Power and UPS", "Nguồn điện và UPS"),
    ("devices", "Equipment", "Trang thiết bị"),
    ("online_meeting", "Online meeting", "Hội nghị trực tuyến"),
    ("reporting", "Reporting", "Hệ thống báo cáo"),
]
_STATUS = {"completed": "completed", "not_completed": "not_completed", "unknown": "insufficient_evidence"}
NOW = time.time()  # the page computes ages and days left from the real clock
TODAY = datetime.fromtimestamp(NOW, timezone(timedelta(hours=7))).date()


def provinces_csv() -> list[dict[str, str]]:
    path = Path(commune_collector.__file__).parent / "data" / "provinces.csv"
    with path.open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def criterion(cid: str, item: str, met: bool | None, reason: str, value: float | None,
              threshold: float, op: str, unit: str) -> dict[str, Any]:
    """A CriterionResult; its reason as data (code + params) and rendered in English, as the API gives it."""
    label = {"en": reason.split(" ")[0], "vi": f"Tiêu chí {cid}"}
    code, params = (("no_evidence", {"window_s": 86400.0}) if met is None else
                    ("measured", {"what": label, "value": value, "unit": unit, "op": op, "threshold": threshold,
                                  "window_s": 86400.0}))
    return {"id": cid, "item": item, "title": {"en": cid.replace(".", " "), "vi": f"tiêu chí {cid}"},
            "required": True, "met": met,
            "value": value, "threshold": threshold, "op": op, "unit": unit, "expr": f"stat(x) {op} {threshold}",
            "window_s": 86400.0, "evidence_ts": NOW - 45 if met is not None else None, "coverage": 1.0,
            "reason": reason, "reason_code": code, "reason_params": params, "checks": [f"link/{item}/icmp/dc"]}


def site_verdict(site: str, name: str, province: str, state: str) -> dict[str, Any]:
    """completed: all met; not_completed: the loss criterion fails; unknown: no evidence."""
    if state == "unknown":
        crits = [criterion(f"{i}.ok", i, None, "no evidence in the window", None, 0.99, ">=", "ratio")
                 for i, _, _ in ITEMS]
    else:
        crits = [criterion(f"{i}.ok", i, True, f"{i} available 100% over 24h, threshold >= 99%", 1.0,
                           0.99, ">=", "ratio") for i, _, _ in ITEMS]
    if state == "not_completed":
        crits[0] = criterion("network.loss", "network", False, "loss 12.3% over 24h, threshold < 1%",
                             0.123, 0.01, "<", "ratio")
    items = {i: ("completed" if state == "completed" else "unknown" if state == "unknown" else
                 "not_completed" if i == "network" else "completed") for i, _, _ in ITEMS}
    loss = crits[0]
    regressions = ([{"at": NOW - 7200, "from": "completed", "to": "not_completed", "cause": ["network.loss"],
                     "detail": f"network.loss: {loss['reason']}",
                     "reasons": [{"criterion": "network.loss", "code": loss["reason_code"],
                                  "params": loss["reason_params"]}]}] if state == "not_completed" else [])
    return {"site": site, "name": name, "province": province, "commune": name, "state": state,
            "since": NOW - 7200, "candidate_since": None, "evaluated_at": NOW, "stable_period_s": 86400.0,
            "connectivity": "primary" if state != "unknown" else "unknown", "outage_cause": None,
            "items": items, "criteria": crits, "regressions": regressions}


@dataclass
class FakeVerdicts:
    """Implements commune_collector.web.source.VerdictSource over generated documents."""

    per_province: int = 3
    deadline: str | None = (TODAY + timedelta(days=10)).isoformat()
    sites: dict[str, dict[str, Any]] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        states = ["completed", "not_completed", "unknown"]
        for p_index, row in enumerate(provinces_csv()):
            self.names[row["slug"]] = row["name"]
            for n in range(self.per_province):
                # the first 20 provinces are fully completed: a known national figure
                state = "completed" if p_index < 20 else states[n % 3]
                site = f"{row['slug']}-{n + 1:03d}"
                self.sites[site] = site_verdict(site, f"Xã Thử {p_index}-{n + 1}", row["slug"], state)

    def _province(self, slug: str) -> dict[str, Any]:
        members = [v for v in self.sites.values() if v["province"] == slug]
        count = {s: sum(v["state"] == s for v in members) for s in ("completed", "not_completed", "unknown")}
        per_item = {}
        for item, _, _ in ITEMS:
            done = sum(v["items"][item] == "completed" for v in members)
            per_item[item] = {"completed": done, "total": len(members), "share": done / len(members),
                              "done": done == len(members)}
        return {"slug": slug, "name": self.names[slug], "total": len(members), **count, "per_item": per_item,
                "done_items": [i for i, v in per_item.items() if v["done"]]}

    def provinces(self) -> dict[str, Any]:
        provinces = [self._province(slug) for slug in self.names]
        per_item = {}
        for item, _, _ in ITEMS:
            done = sum(p["per_item"][item]["done"] for p in provinces)
            per_item[item] = {"provinces_done": done, "provinces_total": len(provinces),
                              "label": f"{done}/{len(provinces)}"}
        return {"evaluated_at": NOW, "deadline": self.deadline,
                "items": [{"id": i, "title": {"en": en, "vi": vi}} for i, en, vi in ITEMS],
                "provinces": provinces,
                "national": {"provinces_total": len(provinces), "per_item": per_item,
                             "sites_total": len(self.sites),
                             "sites_completed": sum(v["state"] == "completed" for v in self.sites.values())}}

    def province(self, slug: str) -> dict[str, Any] | None:
        if slug not in self.names:
            return None
        out = self._province(slug)
        out["communes"] = [{"site": v["site"], "name": v["name"], "commune": v["commune"], "state": v["state"],
                            "since": v["since"],
                            "status": _STATUS[v["state"]], "completed_at": None,
                            "failing": [{"id": c["id"], "item": c["item"], "reason": c["reason"], "met": c["met"],
                                         "reason_code": c["reason_code"], "reason_params": c["reason_params"]}
                                        for c in v["criteria"] if c["met"] is not True]}
                           for v in self.sites.values() if v["province"] == slug]
        return out

    def verdict(self, site: str) -> dict[str, Any] | None:
        return self.sites.get(site)

    def regressions_since(self, since: float) -> list[dict[str, Any]]:
        """As the judge's documents give them: each regression with its site's name and province."""
        return sorted(({**r, "site": v["site"], "name": v["name"], "province": v["province"],
                        "status": _STATUS[v["state"]]}
                       for v in self.sites.values() for r in v["regressions"] if r["at"] >= since),
                      key=lambda r: -r["at"])

    def history(self, province: str | None, days: int) -> dict[str, Any]:
        members = [v for v in self.sites.values() if province in (None, v["province"])]
        total, done = len(members), sum(v["state"] == "completed" for v in members)
        today = TODAY
        series = []
        for back in range(min(days, 14) - 1, -1, -1):
            completed = max(0, done - back * max(1, done // 20))
            series.append({"date": (today - timedelta(days=back)).isoformat(), "completed": completed,
                           "not_completed": total - completed, "unknown": 0, "total": total,
                           "provinces_done": {}})
        return {"deadline": self.deadline, "series": series}
