"""Typed reading of SNMP values and the settings model: unit tests, no peer needed."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from pysnmp.proto import rfc1902, rfc1905

from commune_agent.probes.base import ProbeContext, ProbeResult
from commune_agent.snmp import values
from commune_agent.snmp.errors import (
    SnmpCredentialError,
    SnmpTimeout,
    SnmpTypeError,
    counting_errors,
)
from commune_agent.snmp.probe import UPTIME_WRAP_SECONDS, uptime_went_backwards
from commune_agent.snmp.settings import SnmpSettings


def test_integers_of_every_snmp_type_read_as_int() -> None:
    for value in (rfc1902.Integer32(-5), rfc1902.Gauge32(7), rfc1902.Counter32(9), rfc1902.Counter64(2**40),
                  rfc1902.TimeTicks(12), rfc1902.Unsigned32(3)):
        assert values.integer("1.2.3", value) == int(value)


def test_wrong_type_names_the_oid_the_expectation_and_what_came() -> None:
    with pytest.raises(SnmpTypeError) as caught:
        values.counter64("1.3.6.1.2.1.31.1.1.1.6.4", rfc1902.OctetString(b"12345"))
    assert str(caught.value) == "1.3.6.1.2.1.31.1.1.1.6.4: expected Counter64, the device answered OctetString"
    assert caught.value.kind == "wrong_type"
    with pytest.raises(SnmpTypeError, match="expected an integer, the device answered OctetString"):
        values.integer("1.2", rfc1902.OctetString(b"x"))
    with pytest.raises(SnmpTypeError, match="expected OctetString, the device answered Counter32"):
        values.text("1.2", rfc1902.Counter32(1))
    with pytest.raises(SnmpTypeError, match="expected Counter32 or Counter64, the device answered Gauge32"):
        values.counter("1.2", rfc1902.Gauge32(1))


def test_counter_width_and_timeticks() -> None:
    assert values.counter("1", rfc1902.Counter32(5)) == (5, 32)
    assert values.counter("1", rfc1902.Counter64(5)) == (5, 64)
    assert values.timeticks_seconds("1", rfc1902.TimeTicks(12345)) == 123.45


def test_text_decodes_utf8_then_latin1_and_drops_trailing_nuls() -> None:
    assert values.text("1", rfc1902.OctetString("Phường Ba Đình".encode())) == "Phường Ba Đình"
    assert values.text("1", rfc1902.OctetString(b"caf\xe9\x00\x00")) == "café"


def test_numbers_from_text_for_firmware_that_sends_them_so() -> None:
    assert values.number("1", rfc1902.OctetString(b" 0.15 ")) == 0.15
    with pytest.raises(SnmpTypeError, match="expected a number"):
        values.number("1", rfc1902.OctetString(b"n/a"))


def test_exceptions_are_missing_values() -> None:
    for value in (rfc1905.NoSuchObject(""), rfc1905.NoSuchInstance(""), rfc1905.EndOfMibView(""), None):
        assert values.is_missing(value)
    assert not values.is_missing(rfc1902.Integer32(0))


def test_uptime_backwards_is_a_reboot_unless_it_wrapped() -> None:
    assert uptime_went_backwards(previous=5000.0, elapsed=30.0, now=20.0)
    assert not uptime_went_backwards(previous=5000.0, elapsed=30.0, now=5030.0)
    # just below the 2^32-tick top, 30 s later it reads small again: a wrap, not a reboot
    assert not uptime_went_backwards(previous=UPTIME_WRAP_SECONDS - 10, elapsed=30.0, now=20.0)


def test_settings_refuse_mixed_or_missing_credentials() -> None:
    cases = {
        "SNMP v2c needs exactly one of community_file, community_env or community": {"version": "2c"},
        "user, auth_key* and priv_key* belong to SNMPv3, not v2c": {"community": "x", "user": "u"},
        "SNMPv3 needs a user": {"version": 3, "auth_key": "k"},
        "community* belongs to SNMP v1/v2c": {"version": 3, "user": "u", "community": "c"},
        "privacy (priv_key) needs authentication too": {"version": 3, "user": "u", "priv_key_env": "K"},
        "give each of auth_key and priv_key at most once": {"version": 3, "user": "u", "auth_key": "a",
                                                            "auth_key_env": "A"},
    }
    for message, data in cases.items():
        with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")
                           .replace("*", r"\*")):
            SnmpSettings(**data)


def test_security_level_follows_the_keys_given() -> None:
    assert SnmpSettings(version=3, user="u").security_level == "noAuthNoPriv"
    assert SnmpSettings(version=3, user="u", auth_key_env="A").security_level == "authNoPriv"
    assert SnmpSettings(version=3, user="u", auth_key_env="A", priv_key_env="P").security_level == "authPriv"


def test_secrets_are_masked_in_repr_and_dumps() -> None:
    settings = SnmpSettings(version=3, user="u", auth_key="auth-SECRET-1", priv_key="priv-SECRET-2")
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert "SECRET" not in text
    assert settings.auth_key_value() == "auth-SECRET-1"


def test_credential_file_errors_name_the_field_and_path_not_a_value(tmp_path, monkeypatch) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(SnmpCredentialError) as caught:
        SnmpSettings(community_file=missing).community_value()
    assert str(caught.value) == f"community_file {missing}: cannot read (No such file or directory)"
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(SnmpCredentialError, match="is empty"):
        SnmpSettings(community_file=empty).community_value()
    monkeypatch.delenv("NO_SUCH_COMMUNITY_VAR", raising=False)
    with pytest.raises(SnmpCredentialError, match="environment variable NO_SUCH_COMMUNITY_VAR is not set"):
        SnmpSettings(community_env="NO_SUCH_COMMUNITY_VAR").community_value()


async def test_counting_errors_counts_by_kind_and_keeps_counters_on_success() -> None:
    outcomes = [SnmpTimeout("t"), SnmpTimeout("t"), SnmpTypeError("1.2", "x", rfc1902.Integer32(1)), None]

    @counting_errors
    async def probe(cfg: object, ctx: ProbeContext) -> ProbeResult:
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome
        return ProbeResult(ok=True)

    ctx = ProbeContext(timeout=5.0)
    results = [await probe(None, ctx) for _ in range(4)]
    assert [r.ok for r in results] == [False, False, False, True]
    assert results[1].reason == "t"
    last = results[-1]
    assert last.value("snmp_errors_total", error="timeout") == 2
    assert last.value("snmp_errors_total", error="wrong_type") == 1
    assert last.value("snmp_errors_total", error="auth") == 0
