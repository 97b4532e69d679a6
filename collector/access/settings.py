"""The ``access:`` section of the collector's config: trusted proxies, group mapping, the public view."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network

from pydantic import BaseModel, ConfigDict, Field, field_validator

from commune_collector.access.roles import Role, ScopeError, check_scope

HEADER = r"^[A-Za-z0-9-]{1,64}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_grant(text: str) -> tuple[Role, str | None]:
    """``national``, ``auditor`` or ``province:<slug>`` -> (role, province); ValueError otherwise."""
    from commune_collector.provinces import provinces

    role_text, _, province = text.partition(":")
    try:
        role = Role(role_text)
    except ValueError:
        raise ValueError(f"{text!r} is not national, auditor or province:<slug>") from None
    if role is Role.METRICS:
        raise ValueError("the metrics role is for scrapers' tokens, not for people's groups")
    try:
        check_scope(role, province or None)
    except ScopeError as exc:
        raise ValueError(f"{text!r}: {exc}") from None
    if province and province not in provinces():
        raise ValueError(f"{text!r}: unknown province {province!r}")
    return role, province or None


class ProxySettings(_Strict):
    """A single-sign-on reverse proxy (nginx + oauth2-proxy) that passes the user and groups in headers."""

    trusted: list[IPv4Network | IPv6Network] = Field(
        default=[], description="addresses of proxies whose identity headers are believed (default: none, so "
                                "the headers are ignored from everyone); e.g. [127.0.0.1/32]")
    user_header: str = Field(default="X-Forwarded-User", pattern=HEADER)
    groups_header: str = Field(default="X-Forwarded-Groups", pattern=HEADER,
                               description="comma-separated groups, as oauth2-proxy passes them")
    group_prefix: str = Field(default="commune-monitor:", max_length=64,
                              description="groups named <prefix>national, <prefix>auditor, <prefix>province:<slug>")
    groups: dict[str, str] = Field(default={}, description="explicit IdP group -> national | auditor | "
                                                          "province:<slug>, for group names you cannot choose")

    @field_validator("groups")
    @classmethod
    def _grants(cls, value: dict[str, str]) -> dict[str, str]:
        for group, grant in value.items():
            parse_grant(grant)  # ValueError names the grant; pydantic adds the field
            if not group.strip():
                raise ValueError("a group name is empty")
        return value


class AccessSettings(_Strict):
    proxy: ProxySettings = ProxySettings()
    public_view: bool = Field(default=False, description="serve /public to anyone: national and province counts "
                                                         "and the burn-up; no site, no reason")
