"""Thin wrappers over the Net-SNMP command-line clients (package ``snmp``).

The harness proves SNMP peers ready with the same CLI an operator would use,
independent of the pysnmp version the code under test is built on, so a pysnmp
regression cannot masquerade as a broken peer (and vice versa).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ._base import PeerError, require_binary, run_tool


def cli_env(state_dir: Path) -> dict[str, str]:
    """Environment isolating the clients from ~/.snmp and /var/lib/snmp.

    v3 clients persist engine boots/time; pointing that and the config search
    path into the peer's temp dir keeps runs independent of the host.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    return {
        "SNMP_PERSISTENT_DIR": str(state_dir),
        "SNMPCONFPATH": str(state_dir),
        "MIBS": "",
    }


def snmp_get(
    address: str,
    oid: str,
    auth_args: Sequence[str],
    *,
    env: dict[str, str],
    timeout: float = 1.0,
    retries: int = 1,
    command: str = "snmpget",
) -> str:
    """Return the value (``-Oqv``, quotes stripped) of one OID; PeerError if none.

    ``command`` may be ``snmpgetnext`` to fetch the first OID after ``oid``.
    """
    argv = [
        require_binary(command),
        "-m",
        "",
        "-Oqv",
        "-t",
        f"{timeout:g}",
        "-r",
        str(retries),
        *auth_args,
        address,
        oid,
    ]
    result = run_tool(argv, env=env, timeout=timeout * (retries + 1) + 5, check=False)
    if result.returncode != 0:
        raise PeerError(f"{command} {address} {oid}: {result.stderr.strip()}")
    value = result.stdout.strip()
    if value.startswith(("No Such", "No more variables")):
        raise PeerError(f"{command} {address} {oid}: {value}")
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]  # -Oqv quotes strings; callers want the text
    return value


def v2c_args(community: str) -> list[str]:
    """CLI arguments for an SNMPv2c community."""
    return ["-v2c", "-c", community]


def supports_auth_protocol(protocol: str) -> bool:
    """True when this Net-SNMP build lists ``protocol`` (e.g. SHA-256) for -a.

    snmpd and the clients share libnetsnmp, so the client's help text tells
    what the agent accepts in ``createUser`` as well.
    """
    result = run_tool([require_binary("snmpget"), "-h"], check=False)
    return f"|{protocol}|" in result.stderr + result.stdout or (
        f"|{protocol})" in result.stderr + result.stdout
    )
