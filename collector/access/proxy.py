"""Identities from a trusted single-sign-on proxy: user and groups in headers, mapped to a role.

The headers are believed only when the connection comes from an address in
``access.proxy.trusted`` (default: none). The proxy must overwrite whatever a
client sent in those headers; ``deploy/nginx/commune-monitor.conf`` does.
"""

from __future__ import annotations

from ipaddress import ip_address

from commune_collector.access.roles import Principal, Role
from commune_collector.access.settings import ProxySettings, parse_grant

_ORDER = (Role.NATIONAL, Role.AUDITOR, Role.PROVINCE)  # the widest reading role wins


class ProxyDenied(Exception):
    """A trusted proxy vouched for a user the collector cannot give a role; the message says why."""


def is_trusted(settings: ProxySettings, client_host: str | None) -> bool:
    if not settings.trusted or not client_host:
        return False
    try:
        address = ip_address(client_host)
    except ValueError:
        return False
    return any(address in network for network in settings.trusted)


def grants_of(settings: ProxySettings, groups: list[str]) -> set[tuple[Role, str | None]]:
    """Every (role, province) the user's groups map to; unknown groups are ignored."""
    found: set[tuple[Role, str | None]] = set()
    for group in groups:
        grant = settings.groups.get(group)
        if grant is None and settings.group_prefix and group.startswith(settings.group_prefix):
            grant = group[len(settings.group_prefix):]
        if grant is None:
            continue
        try:
            found.add(parse_grant(grant))
        except ValueError:
            continue  # a group of the prefix the collector does not know (e.g. a misspelt province)
    return found


def principal_from_headers(settings: ProxySettings, user: str, groups_text: str) -> Principal:
    """The principal for a user the proxy authenticated; ProxyDenied when no group gives a role."""
    groups = [g.strip() for g in groups_text.split(",") if g.strip()]
    grants = grants_of(settings, groups)
    for role in _ORDER:
        provinces = sorted({p for r, p in grants if r is role}, key=str)
        if not provinces:
            continue
        if role is Role.PROVINCE and len(provinces) > 1:
            raise ProxyDenied(f"{user} is in the groups of several provinces ({', '.join(map(str, provinces))}); "
                              "a person has one province, or a national or auditor group")
        return Principal(user, role, provinces[0], via="proxy")
    raise ProxyDenied(f"{user} is in no commune-monitor group (e.g. {settings.group_prefix}province:ha-noi)")
