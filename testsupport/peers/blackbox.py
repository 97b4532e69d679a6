"""prometheus-blackbox-exporter on 127.0.0.1:<free port> with a given config.

Benchmarks compare the agent's probes against blackbox's.  ICMP works as root
through a raw socket (``ping_group_range`` blocks unprivileged ICMP here).
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
)

DEFAULT_CONFIG = """\
modules:
  icmp:
    prober: icmp
    timeout: 5s
    icmp:
      preferred_ip_protocol: ip4
  tcp_connect:
    prober: tcp
    timeout: 5s
    tcp:
      preferred_ip_protocol: ip4
  http_2xx:
    prober: http
    timeout: 5s
    http:
      preferred_ip_protocol: ip4
  dns_udp:
    prober: dns
    timeout: 5s
    dns:
      preferred_ip_protocol: ip4
      query_name: example.org
"""


class BlackboxExporterPeer(Peer):
    """A throwaway blackbox exporter; attributes host, port, url, config_path."""

    name = "blackbox"

    def __init__(self, config: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.port = 0
        self.config = config if config is not None else DEFAULT_CONFIG
        self.config_path = self.dir / "blackbox.yml"

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"

    def _check_requirements(self) -> None:
        require_binary("prometheus-blackbox-exporter")

    def _prepare(self) -> None:
        self.port = free_tcp_port()
        self.config_path.write_text(self.config)

    def _launch(self) -> None:
        self._spawn(
            [
                require_binary("prometheus-blackbox-exporter"),
                f"--config.file={self.config_path}",
                f"--web.listen-address={self.host}:{self.port}",
            ]
        )

    def _is_ready(self) -> bool:
        return http_ok(f"{self.url}/-/healthy")

    def probe(self, module: str, target: str, timeout: float = 15.0) -> str:
        """``/probe?module=..&target=..``; returns the exposition text."""
        query = urllib.parse.urlencode({"module": module, "target": target})
        status, body = http_get(f"{self.url}/probe?{query}", timeout=timeout)
        if status != 200:
            raise PeerError(f"blackbox probe {module} {target} -> {status}: {body[:500]!r}")
        return body.decode()


def blackbox_fixture(
    config: str | None = None,
    *,
    scope: str = "session",
    name: str | None = None,
    **kwargs: Any,
) -> Callable[..., Iterator[BlackboxExporterPeer]]:
    """A pytest fixture yielding a started :class:`BlackboxExporterPeer`."""
    return peer_fixture(lambda: BlackboxExporterPeer(config, **kwargs), scope=scope, name=name)
