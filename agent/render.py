"""Human and machine renderings of probe results, for ``probe-once``."""

from __future__ import annotations

from typing import Any, TextIO

from commune_agent.checks import Check
from commune_agent.probes.base import ProbeResult

# the few values worth a column, per probe; everything else is in --json
_HEADLINE: dict[str, list[tuple[str, dict[str, str], str, float]]] = {
    "icmp": [("icmp_rtt_seconds", {"stat": "avg"}, "rtt {:.1f}ms", 1000), ("icmp_loss_ratio", {}, "loss {:.0f}%", 100),
             ("icmp_jitter_seconds", {}, "jitter {:.1f}ms", 1000)],
    "tcp": [("tcp_connect_seconds", {}, "connect {:.1f}ms", 1000)],
    "http": [("http_status_code", {}, "status {:.0f}", 1), ("http_duration_seconds", {}, "{:.0f}ms", 1000),
             ("http_tls_cert_expiry_seconds", {}, "cert {:.0f}d", 1 / 86400)],
    "dns": [("dns_lookup_seconds", {}, "lookup {:.1f}ms", 1000)],
    "host": [("host_cpu_usage_ratio", {}, "cpu {:.0f}%", 100), ("host_memory_used_ratio", {}, "mem {:.0f}%", 100)],
    "snmp_system": [("snmp_system_uptime_seconds", {}, "up {:.1f}d", 1 / 86400)],
    "snmp_interfaces": [("snmp_interfaces_oper_up", {}, "{:.0f} up", 1),
                        ("snmp_interfaces_admin_up", {}, "of {:.0f} enabled", 1)],
    "printer": [("printer_ready", {}, "ready={:.0f}", 1)],
    **dict.fromkeys(("ups_snmp", "ups_apc", "ups_nut", "ups_host"), [
        ("power_on_battery", {}, "on_battery={:.0f}", 1), ("power_battery_charge_ratio", {}, "charge {:.0f}%", 100),
        ("power_battery_runtime_seconds", {}, "runtime {:.0f}min", 1 / 60)]),
}


def headline(check: Check, result: ProbeResult) -> str:
    parts = []
    for name, labels, fmt, scale in _HEADLINE.get(check.probe, []):
        value = result.value(name, **labels)
        if value is not None:
            parts.append(fmt.format(value * scale))
    if not parts and result.samples:
        parts = [f"{s.key}={s.value:g}" for s in result.samples[:3]]
    return ", ".join(parts)


def print_table(results: list[tuple[Check, ProbeResult]], out: TextIO) -> None:
    rows = [("CHECK", "PROBE", "RESULT", "TIME", "DETAIL")]
    for check, r in results:
        detail = headline(check, r) if r.ok else r.reason
        rows.append((check.id, check.probe, "ok" if r.ok else "FAIL", f"{r.duration_s * 1000:.0f}ms", detail))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)) + "  " + row[4] + "\n")
    failed = sum(1 for _, r in results if not r.ok)
    out.write(f"\n{len(results) - failed}/{len(results)} checks ok" + (f", {failed} failed\n" if failed else "\n"))


def results_json(site: str, results: list[tuple[Check, ProbeResult]]) -> dict[str, Any]:
    return {"site": site, "ok": all(r.ok for _, r in results), "checks": [
        {"check": c.id, "probe": c.probe, "labels": c.labels, "ok": r.ok, "reason": r.reason,
         "duration_seconds": r.duration_s, "ts": r.ts, "info": r.info,
         "values": {s.key: s.value for s in r.samples}} for c, r in results]}
