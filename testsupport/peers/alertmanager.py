"""Alertmanager on 127.0.0.1:<free port> with a config given as text.

``--cluster.listen-address=`` (empty) turns gossip off; otherwise it would
listen on 0.0.0.0:9094 and every parallel test run would try to cluster.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from ._base import (
    Peer,
    PeerError,
    free_tcp_port,
    http_get,
    http_ok,
    http_post,
    peer_fixture,
    require_binary,
    wait_until,
)

#: routes everything to a receiver that sends nowhere: alerts are only stored
NULL_CONFIG = """\
route:
  receiver: "null"
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: "null"
"""


class AlertmanagerPeer(Peer):
    """A throwaway Alertmanager; attributes host, port, url, config_path.

    ``config`` is YAML text or a callable that gets the chosen port; default
    :data:`NULL_CONFIG` (keep alerts, notify nobody).
    """

    name = "alertmanager"

    def __init__(
        self,
        config: str | Callable[[int], str] | None = None,
        *,
        extra_args: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.port = 0
        self._config = config
        self.extra_args = list(extra_args)
        self.config_path = self.dir / "alertmanager.yml"

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:PORT`` (what Prometheus targets)."""
        return f"http://{self.host}:{self.port}"

    def _check_requirements(self) -> None:
        require_binary("prometheus-alertmanager")

    def _prepare(self) -> None:
        self.port = free_tcp_port()
        config = self._config(self.port) if callable(self._config) else self._config
        self.config_path.write_text(config if config is not None else NULL_CONFIG)

    def _launch(self) -> None:
        self._spawn(
            [
                require_binary("prometheus-alertmanager"),
                f"--config.file={self.config_path}",
                f"--storage.path={self.dir / 'data'}",
                f"--web.listen-address={self.host}:{self.port}",
                "--cluster.listen-address=",
                *self.extra_args,
            ]
        )

    def _is_ready(self) -> bool:
        return http_ok(f"{self.url}/-/ready")

    # -- API helpers ---------------------------------------------------------

    def alerts(
        self,
        *,
        active: bool = True,
        silenced: bool = True,
        inhibited: bool = True,
        filters: Sequence[str] = (),
    ) -> list[dict[str, Any]]:
        """``GET /api/v2/alerts``; ``filters`` are matchers like ``alertname="X"``."""
        params: list[tuple[str, str]] = [
            ("active", str(active).lower()),
            ("silenced", str(silenced).lower()),
            ("inhibited", str(inhibited).lower()),
            *(("filter", f) for f in filters),
        ]
        status, body = http_get(f"{self.url}/api/v2/alerts?{urllib.parse.urlencode(params)}")
        if status != 200:
            raise PeerError(f"alertmanager GET /api/v2/alerts -> {status}: {body[:500]!r}")
        return list(json.loads(body))

    def alert_names(self) -> set[str]:
        """Names of the alerts currently held (handy in assertions)."""
        return {a["labels"].get("alertname", "") for a in self.alerts()}

    def post_alerts(self, alerts: Sequence[Mapping[str, Any]]) -> None:
        """``POST /api/v2/alerts`` (what Prometheus does when a rule fires)."""
        status, body = http_post(f"{self.url}/api/v2/alerts", json.dumps(list(alerts)).encode())
        if status != 200:
            raise PeerError(f"alertmanager POST /api/v2/alerts -> {status}: {body[:500]!r}")

    def wait_for_alert(self, alertname: str, timeout: float = 30.0) -> dict[str, Any]:
        """Poll until an alert named ``alertname`` is held; return it."""

        def find() -> dict[str, Any] | None:
            matches = self.alerts(filters=[f'alertname="{alertname}"'])
            return matches[0] if matches else None

        return wait_until(find, timeout=timeout, interval=0.25, what=f"alert {alertname}")


def alertmanager_fixture(
    config: str | Callable[[int], str] | None = None,
    *,
    scope: str = "session",
    name: str | None = None,
    **kwargs: Any,
) -> Callable[..., Iterator[AlertmanagerPeer]]:
    """A pytest fixture yielding a started :class:`AlertmanagerPeer`."""
    return peer_fixture(lambda: AlertmanagerPeer(config, **kwargs), scope=scope, name=name)
