"""Roll-ups: communes completed per province and per item, and "N/34 provinces" nationally.

A province counts as done for an item when the share of its communes
completed for that item reaches the item's ``done_share`` (all of them by
default). Sites in the inventory whose agent never reported count in the
total and are not completed: the denominator is the inventory, not the
agents that happen to talk.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from commune_collector.judge.criteria import CriteriaConfig
from commune_collector.judge.hysteresis import S_COMPLETED, S_NOT_COMPLETED, S_UNKNOWN
from commune_collector.judge.status import STATUS_NAMES


@dataclass
class ProvinceRollup:
    slug: str
    name: str
    total: int
    completed: int
    not_completed: int
    unknown: int
    per_item: dict[str, dict] = field(default_factory=dict)
    status_counts: dict[str, int] = field(default_factory=dict)

    @property
    def done_items(self) -> list[str]:
        return [item for item, row in self.per_item.items() if row["done"]]

    def to_json(self) -> dict:
        return {"slug": self.slug, "name": self.name, "total": self.total, "completed": self.completed,
                "not_completed": self.not_completed, "unknown": self.unknown, "per_item": self.per_item,
                "done_items": self.done_items, "status_counts": self.status_counts}


@dataclass
class Rollup:
    evaluated_at: float
    deadline: str | None
    items: list[dict]
    provinces: list[ProvinceRollup]
    national: dict
    target: dict | None = None

    def province(self, slug: str) -> ProvinceRollup | None:
        return next((p for p in self.provinces if p.slug == slug), None)

    def to_json(self) -> dict:
        return {"evaluated_at": self.evaluated_at, "deadline": self.deadline, "items": self.items,
                "provinces": [p.to_json() for p in self.provinces], "national": self.national,
                "target": self.target}


def roll_up(config: CriteriaConfig, province_of_site: np.ndarray, province_slugs: list[str],
            province_names: dict[str, str], site_state: np.ndarray, item_states: dict[str, np.ndarray],
            now: float, site_status: np.ndarray | None = None,
            item_status: dict[str, np.ndarray] | None = None) -> Rollup:
    """Count per province (``province_of_site`` indexes ``province_slugs``) and nationally.

    ``site_status``/``item_status`` (``judge.status`` codes) add the counts by status.
    """
    n = len(province_slugs)

    def count(mask: np.ndarray) -> np.ndarray:
        return np.bincount(province_of_site[mask], minlength=n)

    totals = np.bincount(province_of_site, minlength=n)
    by_state = {s: count(site_state == s) for s in (S_COMPLETED, S_NOT_COMPLETED, S_UNKNOWN)}
    per_item_done = {item: count(states == S_COMPLETED) for item, states in item_states.items()}
    provinces = []
    for p, slug in enumerate(province_slugs):
        total = int(totals[p])
        per_item = {}
        for item, done_counts in per_item_done.items():
            completed = int(done_counts[p])
            share = completed / total if total else 0.0
            per_item[item] = {"completed": completed, "total": total, "share": round(share, 6),
                              "done": bool(total and share >= config.items[item].done_share - 1e-12)}
        provinces.append(ProvinceRollup(slug, province_names.get(slug, slug), total, int(by_state[S_COMPLETED][p]),
                                        int(by_state[S_NOT_COMPLETED][p]), int(by_state[S_UNKNOWN][p]), per_item))
    due = config.due_date
    rollup = Rollup(now, due.isoformat() if due else None, _items(config), provinces,
                    _national(config, provinces, site_state), _target(config))
    if site_status is not None:
        add_status_counts(rollup, province_of_site, site_status, item_status or {})
    return rollup


def _status_table(province_of_site: np.ndarray, codes: np.ndarray, n: int) -> np.ndarray:
    """(province, status) counts."""
    table = np.zeros((n, len(STATUS_NAMES)), dtype=np.int64)
    np.add.at(table, (province_of_site, codes.astype(np.int64)), 1)
    return table


def add_status_counts(rollup: Rollup, province_of_site: np.ndarray, site_status: np.ndarray,
                      item_status: dict[str, np.ndarray]) -> None:
    """Counts by status per province, per (province, item), nationally and per item nationally."""
    n = len(rollup.provinces)
    site_table = _status_table(province_of_site, site_status, n)
    item_tables = {item: _status_table(province_of_site, codes, n) for item, codes in item_status.items()}
    for p, province in enumerate(rollup.provinces):
        province.status_counts = dict(zip(STATUS_NAMES, map(int, site_table[p]), strict=True))
        for item, table in item_tables.items():
            if item in province.per_item:
                province.per_item[item]["status_counts"] = dict(zip(STATUS_NAMES, map(int, table[p]), strict=True))
    national = rollup.national
    national["status_counts"] = dict(zip(STATUS_NAMES, map(int, site_table.sum(axis=0)), strict=True))
    for item, table in item_tables.items():
        if item in national["per_item"]:
            national["per_item"][item]["status_counts"] = dict(zip(STATUS_NAMES, map(int, table.sum(axis=0)),
                                                                    strict=True))


def _target(config: CriteriaConfig) -> dict | None:
    target = config.target
    if target is None:
        return None
    return {"date": target.date.isoformat(), "kind": target.kind,
            "title": {"en": target.title.en, "vi": target.title.vi}}


def _items(config: CriteriaConfig) -> list[dict]:
    return [{"id": key, "title": {"en": item.title.en, "vi": item.title.vi}, "done_share": item.done_share}
            for key, item in config.items.items()]


def _national(config: CriteriaConfig, provinces: list[ProvinceRollup], site_state: np.ndarray) -> dict:
    total = len(provinces)
    per_item = {}
    for item in config.items:
        done = sum(1 for p in provinces if p.per_item[item]["done"])
        per_item[item] = {"provinces_done": done, "provinces_total": total, "label": f"{done}/{total}"}
    return {"provinces_total": total, "per_item": per_item, "sites_total": int(len(site_state)),
            "sites_completed": int((site_state == S_COMPLETED).sum())}


def history_rows(rollup: Rollup) -> list[tuple[str, dict]]:
    """(province slug or '' for national, counts) rows for today's history snapshot."""
    rows = []
    for p in rollup.provinces:
        rows.append((p.slug, {"total": p.total, "completed": p.completed, "not_completed": p.not_completed,
                              "unknown": p.unknown,
                              "items": {k: {"completed": v["completed"], "done": v["done"]}
                                        for k, v in p.per_item.items()}}))
    national = rollup.national
    rows.append(("", {"total": national["sites_total"], "completed": national["sites_completed"],
                      "not_completed": sum(p.not_completed for p in rollup.provinces),
                      "unknown": sum(p.unknown for p in rollup.provinces),
                      "items": {k: {"provinces_done": v["provinces_done"],
                                    "completed": sum(p.per_item[k]["completed"] for p in rollup.provinces)}
                                for k, v in national["per_item"].items()}}))
    return rows
