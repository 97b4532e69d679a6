"""Net-SNMP ``snmpd`` on 127.0.0.1:<free UDP port> with v2c and v3 users.

Used to test the agent's SNMP client against a real agent: v2c with a random
per-run community, SNMPv3 authPriv with SHA/AES and (when the Net-SNMP build
supports it) SHA-256/AES.  ``-C`` keeps the host's /etc/snmp config out,
``-m ''`` avoids hundreds of missing-MIB log lines, and
``-I -smux,mteTrigger,mteTriggerConf`` stops snmpd from also listening on
TCP 0.0.0.0:199 (SMUX) and from running the DISMAN trigger engine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ._base import Peer, free_udp_port, peer_fixture, random_secret, require_binary
from ._snmpcli import cli_env, snmp_get, supports_auth_protocol, v2c_args

SYS_DESCR = "1.3.6.1.2.1.1.1.0"
SYS_NAME = "1.3.6.1.2.1.1.5.0"


@dataclass(frozen=True)
class SnmpV3User:
    """An SNMPv3 USM user configured on the agent (authPriv).

    Protocol names use Net-SNMP spelling (``SHA``, ``SHA-256``, ``AES``) because
    they go verbatim into ``createUser`` and the CLI's ``-a``/``-x`` options.
    """

    name: str
    auth_protocol: str
    auth_key: str
    priv_protocol: str
    priv_key: str

    def cli_args(self) -> list[str]:
        """Arguments for snmpget & co."""
        return [
            "-v3",
            "-l",
            "authPriv",
            "-u",
            self.name,
            "-a",
            self.auth_protocol,
            "-A",
            self.auth_key,
            "-x",
            self.priv_protocol,
            "-X",
            self.priv_key,
        ]

    def usm_user_data(self) -> Any:
        """The equivalent ``pysnmp`` UsmUserData (pysnmp 7; needs ``cryptography``)."""
        from pysnmp.hlapi.v3arch.asyncio import (  # optional dep
            UsmUserData,
            usmAesCfb128Protocol,
            usmHMAC192SHA256AuthProtocol,
            usmHMACSHAAuthProtocol,
        )

        auth = {"SHA": usmHMACSHAAuthProtocol, "SHA-256": usmHMAC192SHA256AuthProtocol}
        priv = {"AES": usmAesCfb128Protocol}
        return UsmUserData(
            self.name,
            self.auth_key,
            self.priv_key,
            authProtocol=auth[self.auth_protocol],
            privProtocol=priv[self.priv_protocol],
        )


class SnmpdPeer(Peer):
    """A throwaway snmpd; attributes: host, port, address, community, v3 users.

    ``user_sha`` is always present; ``user_sha256`` is None when the installed
    Net-SNMP lacks SHA-256 (``sha256_supported`` tells which).
    """

    name = "snmpd"

    def __init__(
        self,
        *,
        community: str | None = None,
        sys_name: str = "ci-snmpd",
        sys_location: str = "loopback test rack",
        extra_config: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.port = 0
        self.community = community or random_secret("ci-")
        self.sys_name = sys_name
        self.sys_location = sys_location
        self.extra_config = extra_config
        self.user_sha = SnmpV3User("ci-sha", "SHA", random_secret("a-"), "AES", random_secret("p-"))
        self.user_sha256: SnmpV3User | None = None
        self.sha256_supported = False
        self._cli_env = cli_env(self.dir / "client")

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT`` as the CLI and most configs spell a target."""
        return f"{self.host}:{self.port}"

    @property
    def v3_users(self) -> list[SnmpV3User]:
        """All configured v3 users (SHA first, then SHA-256 when supported)."""
        return [u for u in (self.user_sha, self.user_sha256) if u is not None]

    def _check_requirements(self) -> None:
        require_binary("snmpd")
        require_binary("snmpget")
        self.sha256_supported = supports_auth_protocol("SHA-256")
        if self.sha256_supported:
            self.user_sha256 = SnmpV3User(
                "ci-sha256", "SHA-256", random_secret("a-"), "AES", random_secret("p-")
            )

    def _prepare(self) -> None:
        self.port = free_udp_port()
        (self.dir / "persist").mkdir(exist_ok=True)
        (self.dir / "snmpd.conf").write_text(self._config_text())
        (self.dir / "snmpd.conf").chmod(0o600)

    def _config_text(self) -> str:
        lines = [
            f"agentAddress udp:{self.host}:{self.port}",
            f"rocommunity {self.community} {self.host}",
            f"sysName {self.sys_name}",
            f"sysLocation {self.sys_location}",
            "sysContact ci@example.invalid",
            "sysServices 72",
            "dontLogTCPWrappersConnects yes",
        ]
        for user in self.v3_users:
            lines.append(
                f'createUser {user.name} {user.auth_protocol} "{user.auth_key}" '
                f'{user.priv_protocol} "{user.priv_key}"'
            )
            lines.append(f"rouser {user.name} priv")
        return "\n".join(lines) + "\n" + self.extra_config + "\n"

    def _launch(self) -> None:
        self._spawn(
            [
                require_binary("snmpd"),
                "-f",
                "-C",
                "-c",
                str(self.dir / "snmpd.conf"),
                "-m",
                "",
                "-I",
                "-smux,mteTrigger,mteTriggerConf",
                "-Lo",
                "-p",
                str(self.dir / "snmpd.pid"),
            ],
            env={"SNMP_PERSISTENT_DIR": str(self.dir / "persist"), "MIBS": ""},
        )

    def _is_ready(self) -> bool:
        return bool(self.get(SYS_DESCR, timeout=0.5, retries=0))

    def _after_ready(self) -> None:
        """Prove every v3 user authenticates and decrypts, not just v2c."""
        for user in self.v3_users:
            self.get(SYS_NAME, user=user)

    def get(
        self,
        oid: str,
        *,
        user: SnmpV3User | None = None,
        timeout: float = 1.0,
        retries: int = 1,
    ) -> str:
        """GET one OID with the CLI (v2c community, or ``user`` for v3)."""
        auth = user.cli_args() if user else v2c_args(self.community)
        return snmp_get(
            self.address, oid, auth, env=self._cli_env, timeout=timeout, retries=retries
        )


def snmpd_fixture(
    *, scope: str = "session", name: str | None = None, **kwargs: Any
) -> Callable[..., Iterator[SnmpdPeer]]:
    """A pytest fixture yielding a started :class:`SnmpdPeer` (kwargs go to it)."""
    return peer_fixture(lambda: SnmpdPeer(**kwargs), scope=scope, name=name)
