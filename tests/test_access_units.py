"""Operators' access in parts: the store (SQLite and a real PostgreSQL), tokens, group mapping, settings.

The whole, against a running collector, is ``tests/test_access.py`` and, through
a real nginx, ``tests/test_access_proxy.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from commune_collector.access.proxy import ProxyDenied, is_trusted, principal_from_headers
from commune_collector.access.roles import Principal, Role, ScopeError
from commune_collector.access.settings import ProxySettings
from commune_collector.access.tokens import (
    Denied,
    OperatorVerifier,
    new_operator_token,
    parse_operator_token,
)
from commune_collector.auth import parse_token
from commune_collector.settings import load_settings
from commune_collector.store.base import Store
from commune_common.yamlconf import ConfigError
from tests.test_store import postgres, store_factory  # noqa: F401 - the shared backends, both

# -- the store, both backends -------------------------------------------------------------------


def test_operator_credentials_are_stored_hashed_listed_and_revoked(store_factory: Callable[..., Store]) -> None:  # noqa: F811
    store = store_factory()
    text, record = new_operator_token("lan@ha-noi", Role.PROVINCE, "ha-noi", time.time() + 3600, now=100.0)
    store.add_operator(record)
    _, auditor = new_operator_token("thanh-tra", Role.AUDITOR, None, None, now=200.0)
    store.add_operator(auditor)
    assert store.get_operator(record.id) == record
    assert text.split("_", 2)[2] not in repr(store.list_operators())  # the secret is never stored
    assert [r.name for r in store.list_operators()] == ["thanh-tra", "lan@ha-noi"]  # newest first
    assert [r.id for r in store.list_operators("lan@ha-noi")] == [record.id]
    assert store.revoke_operators("lan@ha-noi", 300.0) == 1
    assert store.revoke_operators("lan@ha-noi", 301.0) == 0  # already revoked: the first time stands
    assert store.get_operator(record.id).revoked_at == 300.0  # type: ignore[union-attr]
    assert store.revoke_operators(auditor.id, 302.0) == 1  # by id too
    assert store.get_operator("000000000000") is None
    reopened = store_factory()
    assert {r.id for r in reopened.list_operators()} == {record.id, auditor.id}


# -- tokens ------------------------------------------------------------------------------------


class _Store:
    def __init__(self) -> None:
        self.records: dict = {}
        self.lookups = 0

    def get_operator(self, token_id: str):  # noqa: ANN201
        self.lookups += 1
        return self.records.get(token_id)


def test_operator_and_site_tokens_never_parse_as_each_other() -> None:
    text, _ = new_operator_token("a", Role.NATIONAL, None, None)
    assert parse_operator_token(text) is not None and parse_token(text) is None
    assert parse_operator_token("cm_0123456789ab_" + "x" * 43) is None


def test_the_verifier_checks_hash_revocation_and_expiry_and_caches_lookups() -> None:
    store, clock = _Store(), [1000.0]
    verifier = OperatorVerifier(store, cache_ttl=5, clock=lambda: clock[0], wall=lambda: clock[0])  # type: ignore[arg-type]
    text, record = new_operator_token("lan", Role.PROVINCE, "ha-noi", expires_at=1100.0, now=900.0)
    store.records[record.id] = record
    token_id = parse_operator_token(text)[0]  # type: ignore[index]
    assert verifier.verify(text, verifier.lookup(token_id)) == Principal("lan", Role.PROVINCE, "ha-noi")
    verifier.lookup(token_id)
    assert store.lookups == 1  # cached
    with pytest.raises(Denied, match="unknown"):
        verifier.verify(text[:-1] + ("A" if text[-1] != "A" else "B"), record)
    clock[0] = 1100.0
    with pytest.raises(Denied, match="expired"):
        verifier.verify(text, record)
    from dataclasses import replace
    with pytest.raises(Denied, match="revoked"):
        verifier.verify(text, replace(record, revoked_at=950.0, expires_at=None))


def test_a_role_and_its_province_go_together() -> None:
    with pytest.raises(ScopeError, match="needs a province"):
        new_operator_token("x", Role.PROVINCE, None, None)
    with pytest.raises(ScopeError, match="not scoped"):
        new_operator_token("x", Role.AUDITOR, "hue", None)


def test_what_each_role_may_do() -> None:
    province, auditor = Principal("p", Role.PROVINCE, "ha-noi"), Principal("a", Role.AUDITOR)
    national, scraper = Principal("n", Role.NATIONAL), Principal("m", Role.METRICS)
    assert province.may_read_province("ha-noi") and not province.may_read_province("hue")
    assert not province.may_read_province(None) and province.province_scope == "ha-noi"
    assert auditor.may_read_province("hue") and auditor.province_scope is None
    assert [p.may_read_metrics() for p in (national, province, auditor, scraper)] == [True, False, False, True]
    assert [p.may_manage("hue") for p in (national, province, auditor, scraper)] == [True, False, False, False]
    assert province.may_manage("ha-noi") and not scraper.is_operator


# -- groups from the single-sign-on proxy --------------------------------------------------------


SSO = ProxySettings(trusted=["127.0.0.1/32", "10.1.0.0/24"], groups={"/mic/noc": "national"})


@pytest.mark.parametrize("groups,expected", [
    ("commune-monitor:province:ha-noi", (Role.PROVINCE, "ha-noi")),
    ("staff, commune-monitor:auditor ,commune-monitor:province:hue", (Role.AUDITOR, None)),  # the widest wins
    ("/mic/noc,commune-monitor:province:hue", (Role.NATIONAL, None)),
    ("commune-monitor:province:atlantis,commune-monitor:province:hue", (Role.PROVINCE, "hue")),  # unknown ignored
])
def test_groups_map_to_a_role_and_the_widest_wins(groups: str, expected: tuple) -> None:
    principal = principal_from_headers(SSO, "lan", groups)
    assert (principal.role, principal.province, principal.via) == (*expected, "proxy")


@pytest.mark.parametrize("groups,message", [
    ("staff", "no commune-monitor group"),
    ("", "no commune-monitor group"),
    ("commune-monitor:province:hue,commune-monitor:province:ha-noi", "several provinces"),
    ("commune-monitor:metrics", "no commune-monitor group"),  # scrapers are tokens, never people
])
def test_users_without_one_clear_role_are_refused(groups: str, message: str) -> None:
    with pytest.raises(ProxyDenied, match=message):
        principal_from_headers(SSO, "lan", groups)


def test_only_trusted_addresses_are_believed() -> None:
    assert is_trusted(SSO, "127.0.0.1") and is_trusted(SSO, "10.1.0.7")
    assert not is_trusted(SSO, "127.0.0.2") and not is_trusted(SSO, "10.1.1.7") and not is_trusted(SSO, None)
    assert not is_trusted(ProxySettings(), "127.0.0.1")  # the default trusts nobody
    assert not is_trusted(SSO, "not-an-address")


# -- settings -------------------------------------------------------------------------------------


@pytest.mark.parametrize("access,field,message", [
    ("access:\n  proxy:\n    trusted: [127.0.0.300/32]\n", "access.proxy.trusted", "network"),
    ("access:\n  proxy:\n    groups: {\"/noc\": emperor}\n", "access.proxy.groups", "is not national, auditor"),
    ("access:\n  proxy:\n    groups: {\"/hn\": \"province:atlantis\"}\n", "access.proxy.groups",
     "unknown province"),
    ("access:\n  proxy:\n    groups: {\"/hn\": province}\n", "access.proxy.groups", "needs a province"),
    ("access:\n  proxy:\n    user_header: \"X User\"\n", "access.proxy.user_header", "pattern"),
    ("access:\n  public: true\n", "access.public", "unknown key"),
])
def test_bad_access_settings_name_the_file_line_and_field(tmp_path: Path, access: str, field: str,
                                                          message: str) -> None:
    path = tmp_path / "collector.yaml"
    path.write_text("listen: 127.0.0.1:8470\n" + access)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    text = "\n".join(str(i) for i in caught.value.issues)
    assert "collector.yaml:" in text and field in text and message in text, text
