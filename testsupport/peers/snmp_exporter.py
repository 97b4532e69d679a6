"""prometheus-snmp-exporter (0.21) on 127.0.0.1:<free port> with a given config.

Debian ships an empty ``snmp.yml`` (MIB licensing), so configs are written by
hand in the 0.21 format, where ``version:`` and ``auth:`` sit inside each
module.  :func:`if_mib_config` builds a small one for interface counters;
every config is checked with ``--dry-run`` first so a bad one fails with the
exporter's own message instead of a readiness timeout.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

from ._base import (
    Peer,
    PeerError,
    free_tcp_port,
    http_get,
    http_ok,
    peer_fixture,
    require_binary,
    run_tool,
)


def if_mib_config(community: str = "public", module: str = "if_mib") -> str:
    """A 0.21-format module: sysUpTime plus ifTable/ifXTable counters by ifDescr."""
    lookups = """\
        lookups:
          - labels: [ifIndex]
            labelname: ifDescr
            oid: 1.3.6.1.2.1.2.2.1.2
            type: DisplayString
"""

    def counter(metric: str, oid: str, kind: str = "counter") -> str:
        return (
            f"      - name: {metric}\n"
            f"        oid: {oid}\n"
            f"        type: {kind}\n"
            "        indexes:\n"
            "          - labelname: ifIndex\n"
            "            type: gauge\n" + lookups
        )

    return (
        f"{module}:\n"
        "  version: 2\n"
        "  auth:\n"
        f"    community: {community}\n"
        "  walk:\n"
        "    - 1.3.6.1.2.1.2.2.1.2\n"
        "    - 1.3.6.1.2.1.2.2.1.8\n"
        "    - 1.3.6.1.2.1.31.1.1.1.6\n"
        "    - 1.3.6.1.2.1.31.1.1.1.10\n"
        "  get:\n"
        "    - 1.3.6.1.2.1.1.3.0\n"
        "  metrics:\n"
        "      - name: sysUpTime\n"
        "        oid: 1.3.6.1.2.1.1.3\n"
        "        type: gauge\n"
        + counter("ifOperStatus", "1.3.6.1.2.1.2.2.1.8", "gauge")
        + counter("ifHCInOctets", "1.3.6.1.2.1.31.1.1.1.6")
        + counter("ifHCOutOctets", "1.3.6.1.2.1.31.1.1.1.10")
    )


class SnmpExporterPeer(Peer):
    """A throwaway snmp_exporter; attributes host, port, url, config_path."""

    name = "snmp-exporter"

    def __init__(self, config: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.port = 0
        self.config = config if config is not None else if_mib_config()
        self.config_path = self.dir / "snmp.yml"

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"

    def _check_requirements(self) -> None:
        require_binary("prometheus-snmp-exporter")

    def _prepare(self) -> None:
        self.port = free_tcp_port()
        self.config_path.write_text(self.config)
        run_tool(
            [
                require_binary("prometheus-snmp-exporter"),
                f"--config.file={self.config_path}",
                "--dry-run",
            ],
            timeout=30,
        )

    def _launch(self) -> None:
        self._spawn(
            [
                require_binary("prometheus-snmp-exporter"),
                f"--config.file={self.config_path}",
                f"--web.listen-address={self.host}:{self.port}",
            ]
        )

    def _is_ready(self) -> bool:
        return http_ok(f"{self.url}/metrics")

    def scrape(self, target: str, module: str = "if_mib", timeout: float = 30.0) -> str:
        """``/snmp?module=..&target=HOST:PORT``; returns the exposition text."""
        query = urllib.parse.urlencode({"module": module, "target": target})
        status, body = http_get(f"{self.url}/snmp?{query}", timeout=timeout)
        if status != 200:
            raise PeerError(f"snmp_exporter {module} {target} -> {status}: {body[:500]!r}")
        return body.decode()


def snmp_exporter_fixture(
    config: str | None = None,
    *,
    scope: str = "session",
    name: str | None = None,
    **kwargs: Any,
) -> Callable[..., Iterator[SnmpExporterPeer]]:
    """A pytest fixture yielding a started :class:`SnmpExporterPeer`."""
    return peer_fixture(lambda: SnmpExporterPeer(config, **kwargs), scope=scope, name=name)
