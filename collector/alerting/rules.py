"""Which alerts fire and resolve, from the judge's verdict changes and snapshot.

Pure bookkeeping, no I/O, so the mapping is unit-tested on plain inputs. The
judge calls its listeners after every pass with the ``VerdictChange`` events
of that pass and the full snapshot of current verdicts. Events start alerts
(they carry the moment and the cause); both the clearing events and the
snapshot end them, so an alert also resolves when its clearing event was
missed (a restart, a dropped batch) but the snapshot shows the cause gone.

Alertmanager is level-triggered: a firing alert has to be re-sent before its
``endsAt`` or it resolves by itself. The book therefore keeps every firing
alert so the sender can re-send them all on each tick.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from commune_collector.judge.quantity import format_value
from commune_common.units import format_duration

SERVICE = "commune-monitor"
AlertKey = tuple[tuple[str, str], ...]  # the sorted label set: Alertmanager's identity


@dataclass(frozen=True)
class AlertRule:
    """How one kind of verdict change becomes an Alertmanager alert."""

    alertname: str
    severity: str
    item: str  # the readiness item label when the snapshot does not say
    clears_on: str  # the event kind that resolves it
    per_subject: bool  # one alert per criterion/check, or one per site
    summary: str
    hold_s: float = 0.0  # the rule's for: in deploy/prometheus/rules/commune-alerts.yml (a test keeps them equal)
    summary_vi: str = ""


RULES: dict[str, AlertRule] = {
    "regression": AlertRule("CommuneSiteRegressed", "critical", "overall", "recovered", False,
                            "{name} ({province}) fell back from completed", 300.0,
                            "{name} ({province}) không còn đạt trạng thái hoàn thành"),
    "site_silent": AlertRule("CommuneSiteSilent", "warning", "reporting", "site_reporting", True,
                             "{name} ({province}) has stopped reporting", 600.0,
                             "{name} ({province}) đã ngừng gửi báo cáo"),
    "on_battery": AlertRule("CommuneOnBattery", "warning", "power", "on_mains", True,
                            "{name} ({province}) is running on UPS battery", 900.0,
                            "{name} ({province}) đang chạy bằng pin UPS (mất điện lưới)"),
    "device_down": AlertRule("CommuneDeviceDown", "warning", "devices", "device_up", True,
                             "{name} ({province}): a required device is down", 600.0,
                             "{name} ({province}): một thiết bị bắt buộc không phản hồi"),
}
CLEARING: dict[str, str] = {rule.clears_on: kind for kind, rule in RULES.items()}
UPSTREAM = AlertRule("CommuneUpstreamOutage", "critical", "network", "", False,
                     "{name}: {sites} of {reporting} communes lost their primary link together")
# One per commune an upstream event explains, never notified (deploy/alertmanager routes it nowhere): it holds
# that commune's own link alerts, Prometheus's included, by site, in whatever province the commune is.
MEMBER = AlertRule("CommuneBehindUpstreamOutage", "info", "network", "", False,
                   "{name} is behind upstream outage {upstream}")
SITE_KINDS = frozenset(RULES)
INHIBITING = frozenset({"upstream", "member"})  # sent before the rest: Alertmanager must hold them first


def field_of(obj: Any, name: str, default: Any = None) -> Any:
    """Read ``name`` from a dict or an object: the judge's types and test dicts alike."""
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def as_mapping(obj: Any) -> Mapping[str, Any]:
    """A SiteVerdict as a mapping, whatever the judge hands us (dict, pydantic, dataclass)."""
    if isinstance(obj, Mapping):
        return obj
    if hasattr(obj, "model_dump"):
        return obj.model_dump()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    return vars(obj)


class Snapshot:
    """The judge's snapshot (mapping site -> verdict, or a list), indexed by site.

    Verdicts are turned into mappings only when looked at: a pass touches the
    few sites with events or firing alerts, not all 10,000.
    """

    def __init__(self, snapshot: Any):
        values = snapshot.values() if isinstance(snapshot, Mapping) else (snapshot or [])
        self._raw = {str(field_of(v, "site")): v for v in values}
        self._views: dict[str, Mapping[str, Any]] = {}

    def get(self, site: str) -> Mapping[str, Any] | None:
        if site not in self._views:
            raw = self._raw.get(site)
            if raw is None:
                return None
            self._views[site] = as_mapping(raw)
        return self._views[site]

    def sites(self) -> list[str]:
        return list(self._raw)

    def state_of(self, site: str) -> str | None:
        """The verdict state without converting the whole verdict."""
        raw = self._raw.get(site)
        return None if raw is None else field_of(raw, "state")


def iso(ts: float) -> str:
    """Unix seconds -> RFC 3339 in UTC, as Alertmanager's API wants."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Alert:
    """One alert as Alertmanager sees it; ``ends_at`` is None while it fires."""

    kind: str
    labels: dict[str, str]
    starts_at: float
    generator_url: str
    summary: str = ""
    detail: str = ""  # what the judge said when it fired
    evidence: str = ""  # the criteria behind it, refreshed from every snapshot
    runbook_url: str = ""
    criterion: str | None = None
    ends_at: float | None = None
    names: dict[str, str] = field(default_factory=dict)  # site_name, province_name, page_url, summary_vi
    what: dict[str, str] = field(default_factory=dict)  # what failed in words: {"vi": ..., "en": ...}

    @property
    def key(self) -> AlertKey:
        return tuple(sorted(self.labels.items()))

    @property
    def annotations(self) -> dict[str, str]:
        parts = [self.detail] if self.detail and self.detail not in self.evidence else []
        description = "; ".join(parts + ([self.evidence] if self.evidence else []))
        out = {"summary": self.summary, "description": description or self.summary,
               "runbook_url": self.runbook_url, **self.names}
        if self.what:
            out["what_vi"], out["what_en"] = self.what.get("vi", ""), self.what.get("en", "")
        return out

    def payload(self, now: float, hold_s: float) -> dict[str, Any]:
        """The v2 JSON body entry; a firing alert is held ``hold_s`` past now."""
        ends = self.ends_at if self.ends_at is not None else now + hold_s
        return {"labels": self.labels, "annotations": self.annotations, "startsAt": iso(self.starts_at),
                "endsAt": iso(ends), "generatorURL": self.generator_url}


@dataclass
class AlertBook:
    """The alerts currently firing, updated once per judge pass."""

    external_url: str
    runbook: Any = None  # callable alertname -> url; default: the status page's help
    firing: dict[AlertKey, Alert] = field(default_factory=dict)
    seeded: bool = False
    hold_down: bool = False  # wait each rule's hold_s (its Prometheus for:) before an alert is sent
    pending: dict[AlertKey, Alert] = field(default_factory=dict)
    markers: dict[tuple[str, str, str], AlertKey] = field(default_factory=dict)  # (event, site, province) -> key

    def apply(self, changes: Iterable[Any], snapshot: Any, now: float) -> list[Alert]:
        """Fold one pass in; return the alerts whose state changed (fired or resolved)."""
        sites = Snapshot(snapshot)
        changed: dict[AlertKey, Alert] = {}
        if not self.seeded:
            self._seed_regressions(sites, now, changed)
            self.seeded = True
        for change in changes:
            kind = str(field_of(change, "kind"))
            if kind in RULES:
                self._fire(RULES[kind], kind, change, sites, now, changed)
            elif kind in CLEARING:
                self._clear_by_event(CLEARING[kind], change, now, changed)
        self._clear_by_snapshot(sites, now, changed)
        self._join_upstream(sites, now, changed)
        self._promote(now, changed)
        self._refresh_evidence(sites)
        events = getattr(snapshot, "upstream_events", None) or []
        self._upstream(events, now, changed)
        self._members(events, _upstream_members(snapshot, sites, events), now, changed)
        return inhibitors_first(changed.values())

    def _hold_of(self, alert: Alert) -> float:
        return RULES[alert.kind].hold_s if self.hold_down else 0.0

    def _promote(self, now: float, changed: dict[AlertKey, Alert]) -> None:
        """Pending alerts whose cause has lasted the rule's hold-down start firing (startsAt: when it began)."""
        for key, alert in list(self.pending.items()):
            if now - alert.starts_at >= self._hold_of(alert):
                del self.pending[key]
                self.firing[key] = alert
                changed[key] = alert

    def _upstream(self, events: list[Mapping[str, Any]], now: float, changed: dict[AlertKey, Alert]) -> None:
        """One alert per upstream outage (judge/upstream.py), resolved when the judge no longer sees it."""
        live = set()
        for event in events:
            labels = {"alertname": UPSTREAM.alertname, "service": SERVICE, "upstream": str(event["key"]),
                      "province": str(event.get("province") or ""), "severity": UPSTREAM.severity,
                      "item": UPSTREAM.item}
            alert = Alert("upstream", labels, float(event["started_at"]),
                          f"{self.external_url}/p/{event.get('province') or ''}",
                          summary=UPSTREAM.summary.format(name=event["name"], sites=event["sites"],
                                                          reporting=event["reporting"]),
                          runbook_url=self._runbook(UPSTREAM.alertname))
            alert.evidence = (f"{event['sites']}/{event['reporting']} reporting communes lost their primary path "
                              f"within minutes of {iso(float(event['started_at']))}")
            live.add(alert.key)
            if alert.key in self.firing:
                self.firing[alert.key].evidence = alert.evidence
                continue
            self.firing[alert.key] = alert
            changed[alert.key] = alert
        self._resolve_missing("upstream", live, now, changed)

    def _members(self, events: list[Mapping[str, Any]], members: Mapping[str, list[tuple[str, str]]], now: float,
                 changed: dict[AlertKey, Alert]) -> None:
        """One never-notified alert per commune an event explains, labelled with the event's key."""
        live: set[AlertKey] = set()
        starts = {str(e["key"]): float(e["started_at"]) for e in events}
        known = self.markers
        self.markers = {}
        for key, sites in members.items():
            for site, province in sites:
                ident = (key, site, province)
                alert_key = known.get(ident)  # a national outage is thousands of markers: build each once
                if alert_key is None or alert_key not in self.firing:
                    labels = {"alertname": MEMBER.alertname, "service": SERVICE, "site": site, "province": province,
                              "upstream": key, "cause": "upstream", "severity": MEMBER.severity,
                              "item": MEMBER.item}
                    alert = Alert("member", labels, starts.get(key, now), f"{self.external_url}/s/{site}",
                                  summary=MEMBER.summary.format(name=site, upstream=key))
                    alert_key = alert.key
                    self.firing[alert_key] = alert
                    changed[alert_key] = alert
                self.markers[ident] = alert_key
                live.add(alert_key)
        self._resolve_missing("member", live, now, changed)

    def _resolve_missing(self, kind: str, live: set[AlertKey], now: float, changed: dict[AlertKey, Alert]) -> None:
        for key, alert in list(self.firing.items()):
            if alert.kind == kind and key not in live:
                self._resolve(alert, now, changed)

    def _join_upstream(self, sites: Snapshot, now: float, changed: dict[AlertKey, Alert]) -> None:
        """A commune alert raised before its commune's upstream event was recognised (its loss reached the
        judge a pass before the others') is raised again with the event's labels, so the event holds it;
        the first copy resolves (a pending one is relabelled before it is ever sent)."""
        for alert in list(self.firing.values()) + list(self.pending.values()):
            if alert.kind not in SITE_KINDS:
                continue
            key = _upstream_key(sites.get(alert.labels["site"]) or {})
            if key is None or alert.labels.get("upstream") == key:
                continue
            again = dataclasses.replace(alert, labels={**alert.labels, "cause": "upstream", "upstream": key})
            if self.pending.pop(alert.key, None) is not None:
                self.pending[again.key] = again
                continue
            self._resolve(alert, now, changed)
            self.firing[again.key] = again
            changed[again.key] = again

    # -- firing ---------------------------------------------------------------

    def _fire(self, rule: AlertRule, kind: str, change: Any, sites: Snapshot,
              now: float, changed: dict[AlertKey, Alert]) -> None:
        site = str(field_of(change, "site"))
        verdict = sites.get(site) or {}
        criterion = field_of(change, "criterion") if rule.per_subject else None
        check = field_of(change, "check") if rule.per_subject else None
        crit = _criterion(verdict, criterion)
        labels = {
            "alertname": rule.alertname,
            "service": SERVICE,
            "site": site,
            "province": str(field_of(change, "province") or verdict.get("province") or ""),
            "severity": rule.severity,
            "item": str((crit or {}).get("item") or rule.item),
        }
        if criterion:
            labels["criterion"] = str(criterion)
        if verdict.get("outage_cause") == "upstream":  # held while its event's alert fires (equal: upstream)
            labels["cause"] = "upstream"
            if (upstream := _upstream_key(verdict)) is not None:
                labels["upstream"] = upstream
        if check:
            labels["check"] = str(check)
        name = str(verdict.get("name") or site)
        alert = Alert(kind, labels, float(field_of(change, "at") or now), f"{self.external_url}/s/{site}",
                      summary=rule.summary.format(name=name, province=labels["province"]),
                      detail=str(field_of(change, "detail") or ""),
                      runbook_url=self._runbook(rule.alertname),
                      criterion=str(criterion) if criterion else None)
        if alert.key in self.firing or alert.key in self.pending:
            return  # already firing (the periodic re-send keeps it alive) or waiting out its hold-down
        alert.evidence = _evidence(alert, verdict)
        alert.names = _names(rule, verdict, site, labels["province"], self.external_url)
        alert.what = _what(alert, verdict)
        self.pending[alert.key] = alert

    def _seed_regressions(self, sites: Snapshot, now: float,
                          changed: dict[AlertKey, Alert]) -> None:
        """After a restart the events are gone: a site whose current stretch began
        with a regression is still regressed, so its alert fires again."""
        for site in sites.sites():
            if sites.state_of(site) != "not_completed":
                continue
            verdict = sites.get(site) or {}
            regressions = verdict.get("regressions") or []
            since = verdict.get("since")
            if not regressions or since is None:
                continue
            last = regressions[-1]
            if last.get("to") == "not_completed" and float(last["at"]) >= float(since) - 1.0:
                change = {"site": site, "province": verdict.get("province"), "kind": "regression",
                          "at": last["at"], "detail": last.get("detail", "")}
                self._fire(RULES["regression"], "regression", change, sites, now, changed)

    # -- resolving ------------------------------------------------------------

    def _resolve(self, alert: Alert, now: float, changed: dict[AlertKey, Alert]) -> None:
        self.firing.pop(alert.key, None)
        alert.ends_at = now
        changed[alert.key] = alert

    def _clear_by_event(self, kind: str, change: Any, now: float,
                        changed: dict[AlertKey, Alert]) -> None:
        site = str(field_of(change, "site"))
        criterion = field_of(change, "criterion")
        check = field_of(change, "check")
        for alert in list(self.firing.values()) + list(self.pending.values()):
            if alert.kind != kind or alert.labels["site"] != site:
                continue
            if criterion and alert.labels.get("criterion") not in (None, str(criterion)):
                continue
            if check and alert.labels.get("check") not in (None, str(check)):
                continue
            self._settle(alert, now, changed)

    def _settle(self, alert: Alert, now: float, changed: dict[AlertKey, Alert]) -> None:
        """The cause is gone: a firing alert resolves, a pending one is forgotten (never sent)."""
        if self.pending.pop(alert.key, None) is not None:
            return
        self._resolve(alert, now, changed)

    def _clear_by_snapshot(self, sites: Snapshot, now: float,
                           changed: dict[AlertKey, Alert]) -> None:
        for alert in list(self.firing.values()) + list(self.pending.values()):
            if alert.kind not in SITE_KINDS:
                continue
            verdict = sites.get(alert.labels["site"])
            if verdict is None or _cause_cleared(alert, verdict):
                self._settle(alert, now, changed)

    # -- annotations ----------------------------------------------------------

    def _runbook(self, alertname: str) -> str:
        if self.runbook is not None:
            return str(self.runbook(alertname))
        return f"{self.external_url}/help/alerts#{alertname}"

    def _refresh_evidence(self, sites: Snapshot) -> None:
        """Keep the evidence in firing alerts current; it goes out with the next re-send."""
        for alert in self.firing.values():
            if alert.kind not in SITE_KINDS:
                continue
            verdict = sites.get(alert.labels.get("site", ""))
            if verdict is not None:
                alert.evidence = _evidence(alert, verdict) or alert.evidence
                alert.what = _what(alert, verdict) or alert.what


def inhibitors_first(alerts: Iterable[Alert]) -> list[Alert]:
    """The alerts that inhibit others first, each part in its own order."""
    alerts = list(alerts)
    return [a for a in alerts if a.kind in INHIBITING] + [a for a in alerts if a.kind not in INHIBITING]


def _upstream_key(verdict: Mapping[str, Any]) -> str | None:
    """The key of the upstream event that explains this commune's outage, if one does."""
    event = verdict.get("upstream") if verdict.get("outage_cause") == "upstream" else None
    return str(event["key"]) if event and event.get("key") else None


def _upstream_members(snapshot: Any, sites: Snapshot, events: list[Mapping[str, Any]]
                      ) -> Mapping[str, list[tuple[str, str]]]:
    """Each event's member communes: the judge's views know them; plain test snapshots are scanned."""
    members = getattr(snapshot, "upstream_members", None)
    if members is not None or not events:
        return members or {}
    out: dict[str, list[tuple[str, str]]] = {str(e["key"]): [] for e in events}
    for site in sites.sites():
        verdict = sites.get(site) or {}
        key = _upstream_key(verdict)
        if key in out:
            out[key].append((site, str(verdict.get("province") or "")))
    return out


def _criterion(verdict: Mapping[str, Any], criterion: Any) -> Mapping[str, Any] | None:
    if not criterion:
        return None
    for crit in verdict.get("criteria") or []:
        if crit.get("id") == criterion:
            return crit
    return None


def _cause_cleared(alert: Alert, verdict: Mapping[str, Any]) -> bool:
    """Whether the snapshot shows the alert's cause gone."""
    if alert.kind == "regression":
        return verdict.get("state") == "completed"
    crit = _criterion(verdict, alert.criterion)
    return crit is not None and crit.get("met") is True


def _evidence(alert: Alert, verdict: Mapping[str, Any]) -> str:
    """The evidence line: the failing criteria's reasons with value, threshold, window, time."""
    if alert.kind == "regression":
        regressions = verdict.get("regressions") or []
        causes = set(regressions[-1].get("cause") or []) if regressions else set()
        crits = [c for c in verdict.get("criteria") or [] if c.get("id") in causes or
                 (not causes and c.get("required") and c.get("met") is False)]
    else:
        crit = _criterion(verdict, alert.criterion)
        crits = [crit] if crit else []
    return "; ".join(_describe(c) for c in crits)


def _describe(crit: Mapping[str, Any]) -> str:
    unit = str(crit.get("unit", ""))
    parts = [f"{crit.get('id')}: {crit.get('reason') or 'not met'}",
             f"value {format_value(crit.get('value'), unit)}",
             f"threshold {crit.get('op', '')} {format_value(crit.get('threshold'), unit)}"]
    if crit.get("window_s"):
        parts.append(f"window {format_duration(float(crit['window_s']))}")
    if crit.get("evidence_ts"):
        parts.append(f"evidence at {iso(float(crit['evidence_ts']))}")
    return " | ".join(parts)


def _province_name(slug: str) -> str:
    from commune_collector.provinces import provinces  # the shipped 34 provinces

    found = provinces().get(slug)
    return found.name if found is not None else slug


def _names(rule: AlertRule, verdict: Mapping[str, Any], site: str, province: str, external_url: str
           ) -> dict[str, str]:
    """Names and links a person reads in a notification (labels keep the slugs Alertmanager routes on)."""
    name = str(verdict.get("name") or site)
    province_name = _province_name(province) if province else ""
    return {"site_name": name, "province_name": province_name, "page_url": f"{external_url}/s/{site}",
            "summary_vi": rule.summary_vi.format(name=name, province=province_name or province)}


def _alert_criteria(alert: Alert, verdict: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    if alert.kind == "regression":
        regressions = verdict.get("regressions") or []
        causes = set(regressions[-1].get("cause") or []) if regressions else set()
        return [c for c in verdict.get("criteria") or [] if c.get("id") in causes or
                (not causes and c.get("required") and c.get("met") is False)]
    crit = _criterion(verdict, alert.criterion)
    return [crit] if crit else []


def _what(alert: Alert, verdict: Mapping[str, Any]) -> dict[str, str]:
    """What failed, in words, in Vietnamese and English: each criterion's title and its reason."""
    from commune_collector.reasons import criterion_line, render_any

    out = {}
    for lang in ("vi", "en"):
        lines = [criterion_line(crit, lang) for crit in _alert_criteria(alert, verdict)]
        if alert.kind == "device_down" and alert.labels.get("check"):
            lines.append(render_any({"code": "device_down", "params": {"check": alert.labels["check"]}}, lang))
        out[lang] = "; ".join(lines)
    return out if any(out.values()) else {}
