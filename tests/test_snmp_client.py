"""The shared SNMP engine against real Net-SNMP snmpd: v1, v2c, v3 (SHA-1/SHA-2, AES-128/192/256),
credentials from files and environment, timeouts, the per-device request bound and the row bound."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest

from commune_agent.snmp import oids
from commune_agent.snmp.client import Device, SnmpClient
from commune_agent.snmp.errors import SnmpAuthError, SnmpTimeout, SnmpTooManyRows
from commune_agent.snmp.settings import SnmpSettings
from commune_agent.snmp.values import text
from testsupport.peers.snmpd import SnmpdPeer

# users for every SHA-2 / AES variant; Net-SNMP's AES-192/256 extend the key the Blumenthal way
SHA2_USERS = {
    ("SHA-224", "AES"): "u224",
    ("SHA-256", "AES-192"): "u256",
    ("SHA-384", "AES-256"): "u384",
    ("SHA-512", "AES-256"): "u512",
    ("SHA", "AES-192"): "usha192",  # a 20-byte SHA-1 key stretched to 24 bytes: Blumenthal vs Reeder matters
    ("SHA", "AES-256"): "usha256",
}
AUTH_ONLY_USER = "uauth"


def _extra_config() -> str:
    lines = []
    for (auth, priv), user in SHA2_USERS.items():
        lines += [f'createUser {user} {auth} "auth-{user}-pass" {priv} "priv-{user}-pass"', f"rouser {user} priv"]
    lines += [f'createUser {AUTH_ONLY_USER} SHA-256 "auth-{AUTH_ONLY_USER}-pass"', f"rouser {AUTH_ONLY_USER} auth"]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def snmpd_v3() -> Iterator[SnmpdPeer]:
    """snmpd with a v3 user for every SHA-2 and AES size (the session one has SHA/AES only)."""
    peer = SnmpdPeer(extra_config=_extra_config())
    peer.start()
    try:
        yield peer
    finally:
        peer.stop()


@pytest.fixture
async def client() -> SnmpClient:
    engine = SnmpClient()
    yield engine
    engine.close()


def v2c(peer: SnmpdPeer, **kw: object) -> Device:
    return Device("127.0.0.1", SnmpSettings(port=peer.port, community=peer.community, **kw))


async def test_v2c_get_and_multi_column_walk(snmpd: SnmpdPeer, client: SnmpClient) -> None:
    device = v2c(snmpd)
    got = await client.get(device, [oids.SYS_NAME, oids.SYS_UPTIME])
    assert text(oids.SYS_NAME, got[oids.SYS_NAME]) == snmpd.get(oids.SYS_NAME).strip('"')
    table = await client.walk(device, [oids.IF_DESCR, oids.IF_OPER_STATUS, "1.3.6.1.2.1.99.42"])
    names = {text("d", v) for v in table[oids.IF_DESCR].values()}
    assert "lo" in names
    assert set(table[oids.IF_DESCR]) == set(table[oids.IF_OPER_STATUS])  # same rows, walked together
    assert table["1.3.6.1.2.1.99.42"] == {}  # an absent column is empty, not an error


async def test_v1_walk_ends_at_no_such_name(snmpd: SnmpdPeer, client: SnmpClient) -> None:
    device = Device("127.0.0.1", SnmpSettings(version=1, port=snmpd.port, community=snmpd.community))
    v1 = await client.walk(device, [oids.IF_DESCR])
    v2 = await client.walk(v2c(snmpd), [oids.IF_DESCR])
    assert {k: text("d", v) for k, v in v1[oids.IF_DESCR].items()} == {
        k: text("d", v) for k, v in v2[oids.IF_DESCR].items()}


async def test_v3_authpriv_sha_aes128_from_key_files(snmpd: SnmpdPeer, client: SnmpClient, tmp_path) -> None:
    user = snmpd.user_sha
    (tmp_path / "auth").write_text(user.auth_key + "\n")
    (tmp_path / "priv").write_text(user.priv_key + "\n")
    device = Device("127.0.0.1", SnmpSettings(version=3, port=snmpd.port, user=user.name, auth_protocol="SHA",
                                              auth_key_file=tmp_path / "auth", priv_protocol="AES",
                                              priv_key_file=tmp_path / "priv"))
    got = await client.get(device, [oids.SYS_NAME])
    assert text(oids.SYS_NAME, got[oids.SYS_NAME]) == snmpd.sys_name


@pytest.mark.parametrize(("auth", "priv"), sorted(SHA2_USERS), ids=lambda v: str(v))
async def test_v3_authpriv_every_sha2_and_aes_size(snmpd_v3: SnmpdPeer, client: SnmpClient, auth: str,
                                                   priv: str, monkeypatch: pytest.MonkeyPatch) -> None:
    user = SHA2_USERS[(auth, priv)]
    monkeypatch.setenv("TEST_AUTH_KEY", f"auth-{user}-pass")
    monkeypatch.setenv("TEST_PRIV_KEY", f"priv-{user}-pass")
    device = Device("127.0.0.1", SnmpSettings(version=3, port=snmpd_v3.port, user=user, auth_protocol=auth,
                                              auth_key_env="TEST_AUTH_KEY", priv_protocol=priv,
                                              priv_key_env="TEST_PRIV_KEY", timeout="1s", retries=0))
    assert device.settings.security_level == "authPriv"
    got = await client.get(device, [oids.SYS_NAME])
    assert text(oids.SYS_NAME, got[oids.SYS_NAME]) == snmpd_v3.sys_name


async def test_v3_authnopriv(snmpd_v3: SnmpdPeer, client: SnmpClient) -> None:
    device = Device("127.0.0.1", SnmpSettings(version=3, port=snmpd_v3.port, user=AUTH_ONLY_USER,
                                              auth_protocol="SHA-256", auth_key=f"auth-{AUTH_ONLY_USER}-pass"))
    assert device.settings.security_level == "authNoPriv"
    table = await client.walk(device, [oids.IF_DESCR])
    assert table[oids.IF_DESCR]


async def test_v3_wrong_auth_key_is_an_auth_error_without_the_key(snmpd: SnmpdPeer, client: SnmpClient) -> None:
    user = snmpd.user_sha
    device = Device("127.0.0.1", SnmpSettings(version=3, port=snmpd.port, user=user.name,
                                              auth_key="wrong-auth-key-123", priv_key=user.priv_key,
                                              timeout="1s", retries=0))
    with pytest.raises(SnmpAuthError) as caught:
        await client.get(device, [oids.SYS_NAME])
    message = str(caught.value)
    assert user.name in message and "refused" in message
    assert "wrong-auth-key-123" not in message and user.priv_key not in message


async def test_silent_device_times_out_after_every_try(client: SnmpClient) -> None:
    """A bound UDP socket that never answers: the request is retried, then a timeout error."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.setblocking(False)
        port = silent.getsockname()[1]
        device = Device("127.0.0.1", SnmpSettings(port=port, community="secret-community", timeout="200ms",
                                                  retries=1))
        with pytest.raises(SnmpTimeout) as caught:
            await client.get(device, [oids.SYS_NAME])
        received = 0
        while True:
            try:
                silent.recv(65535)
            except BlockingIOError:
                break
            received += 1
    assert str(caught.value) == f"no SNMP reply from 127.0.0.1:{port} to GET within 0.2s x 2 tries"
    assert received == 2  # the first try and one retry
    assert "secret-community" not in str(caught.value)


async def test_requests_to_one_device_are_bounded(snmpd: SnmpdPeer, client: SnmpClient) -> None:
    device = v2c(snmpd, max_concurrent=2, max_repetitions=1)
    await asyncio.gather(*(client.walk(device, [oids.IF_DESCR]) for _ in range(8)))
    assert client.peak_in_flight[device.address] == 2  # eight walks at once, never more than two requests
    assert client.requests[device.address] >= 8


async def test_one_engine_serves_every_device(snmpd: SnmpdPeer, snmpd_v3: SnmpdPeer, client: SnmpClient) -> None:
    await client.get(v2c(snmpd), [oids.SYS_NAME])
    engine = client.engine
    await client.get(v2c(snmpd_v3), [oids.SYS_NAME])
    assert client.engine is engine
    assert set(client.requests) == {f"127.0.0.1:{snmpd.port}", f"127.0.0.1:{snmpd_v3.port}"}


async def test_a_table_longer_than_max_rows_ends_the_walk(snmpd: SnmpdPeer, client: SnmpClient) -> None:
    full = await client.walk(v2c(snmpd), [oids.IF_DESCR])
    assert len(full[oids.IF_DESCR]) >= 2  # lo and at least one more
    with pytest.raises(SnmpTooManyRows, match=r"returned more than 1 rows in 1\.3\.6\.1\.2\.1\.2\.2\.1\.2"):
        await client.walk(v2c(snmpd, max_repetitions=5), [oids.IF_DESCR], max_rows=1)


async def test_same_v3_user_name_with_other_keys_on_two_devices(snmpd: SnmpdPeer, snmpd_v3: SnmpdPeer,
                                                                client: SnmpClient) -> None:
    """Both snmpd have user ci-sha with their own random keys; asked at once, both must answer."""
    assert snmpd.user_sha.name == snmpd_v3.user_sha.name and snmpd.user_sha.auth_key != snmpd_v3.user_sha.auth_key

    def v3(peer: SnmpdPeer) -> Device:
        u = peer.user_sha
        return Device("127.0.0.1", SnmpSettings(version=3, port=peer.port, user=u.name, auth_key=u.auth_key,
                                                priv_key=u.priv_key, timeout="1s", retries=0))

    for _ in range(3):
        names = await asyncio.gather(*(client.get(v3(p), [oids.SYS_NAME]) for p in (snmpd, snmpd_v3, snmpd)))
        assert [text("n", got[oids.SYS_NAME]) for got in names] == [snmpd.sys_name, snmpd_v3.sys_name,
                                                                    snmpd.sys_name]
    assert client.engines == 2  # pysnmp keeps one key set per user name and engine


async def test_a_rotated_key_file_is_read_at_the_next_request(snmpd: SnmpdPeer, client: SnmpClient,
                                                              tmp_path) -> None:
    user = snmpd.user_sha
    key = tmp_path / "auth"
    device = Device("127.0.0.1", SnmpSettings(version=3, port=snmpd.port, user=user.name, auth_key_file=key,
                                              priv_key=user.priv_key, timeout="1s", retries=0))
    key.write_text("an-old-key-that-was-replaced\n")
    with pytest.raises(SnmpAuthError):
        await client.get(device, [oids.SYS_NAME])
    key.write_text(user.auth_key + "\n")
    got = await client.get(device, [oids.SYS_NAME])
    assert text(oids.SYS_NAME, got[oids.SYS_NAME]) == snmpd.sys_name
    assert client.engines == 1  # the device's old entry gave way; no engine per rotation


@pytest.mark.parametrize("good_first", [True, False], ids=["good-first", "misconfigured-first"])
@pytest.mark.parametrize("wrong", [{"auth_protocol": "SHA-256"}, {"priv_protocol": "AES-256"}],
                         ids=["other-auth-protocol", "other-priv-protocol"])
async def test_same_user_and_key_files_with_other_protocols_do_not_share_keys(
        snmpd: SnmpdPeer, client: SnmpClient, tmp_path, good_first: bool, wrong: dict[str, str]) -> None:
    """Two entries for one agent, one user name, the same key files, different protocols (a typo in one).

    Whatever the order, asked one after the other or at once, the right entry reads and the wrong one
    is refused: the wrong protocols must never borrow the right entry's localized keys, nor evict them.
    """
    user = snmpd.user_sha  # SHA / AES on the agent
    auth, priv = tmp_path / "auth", tmp_path / "priv"
    auth.write_text(user.auth_key + "\n")
    priv.write_text(user.priv_key + "\n")

    def entry(**protocols: str) -> Device:
        return Device("127.0.0.1", SnmpSettings(version=3, port=snmpd.port, user=user.name, auth_key_file=auth,
                                                priv_key_file=priv, timeout="1s", retries=0, **protocols))

    good, bad = entry(), entry(**wrong)

    async def outcome(device: Device) -> str:
        try:
            got = await client.get(device, [oids.SYS_NAME])
        except SnmpAuthError:
            return "refused"
        except SnmpTimeout:  # a wrong privacy key decrypts to garbage: snmpd drops it without a report
            return "refused"
        return text(oids.SYS_NAME, got[oids.SYS_NAME])

    order = [good, bad] if good_first else [bad, good]
    expected = [snmpd.sys_name if d is good else "refused" for d in order]
    for _ in range(2):
        assert [await outcome(d) for d in order] == expected
    for _ in range(3):
        assert list(await asyncio.gather(*(outcome(d) for d in order * 2))) == expected * 2
    assert client.engines == 2  # one key set per (user, protocols, key source)
