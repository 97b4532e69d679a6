"""The probe registry: one line per probe kind.

A new probe is a new module under ``probes/`` exposing ``SPEC`` and one entry
here; the agent's config union, the scheduler, /metrics and docs/metrics.md all
derive from it. It lives apart from the probes: nothing a probe imports (``snmp``,
``power``, ``probes.base``) imports it, so there is no import order to keep.
"""

from __future__ import annotations

from commune_agent.probes import (
    dns,
    host,
    http,
    icmp,
    printer,
    snmp_get,
    snmp_interfaces,
    snmp_system,
    tcp,
    ups_apc,
    ups_host,
    ups_nut,
    ups_snmp,
)
from commune_agent.probes.base import ProbeSpec

PROBES: dict[str, ProbeSpec] = {spec.kind: spec for spec in (
    icmp.SPEC,
    tcp.SPEC,
    http.SPEC,
    dns.SPEC,
    host.SPEC,
    snmp_system.SPEC,
    snmp_interfaces.SPEC,
    snmp_get.SPEC,
    printer.SPEC,
    ups_snmp.SPEC,
    ups_apc.SPEC,
    ups_nut.SPEC,
    ups_host.SPEC,
)}
