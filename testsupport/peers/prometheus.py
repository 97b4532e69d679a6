"""Prometheus 2.x on 127.0.0.1:<free port> with a config given as text.

Tests start one per test with their own scrape/rule config (see the
``prometheus_factory`` fixture).  Rule files passed in ``files`` are written
beside ``prometheus.yml``, so the config can name them relatively.
``--web.enable-lifecycle`` is always on so a test may POST ``/-/reload``.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
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


def promtool_path() -> str:
    """Absolute path of ``promtool`` (skip, or fail under CI, when missing)."""
    return require_binary("promtool")


def self_scrape_config(port: int, interval: str = "1s") -> str:
    """A minimal config scraping Prometheus itself (default when none given)."""
    return (
        "global:\n"
        f"  scrape_interval: {interval}\n"
        f"  evaluation_interval: {interval}\n"
        "scrape_configs:\n"
        "  - job_name: prometheus\n"
        "    static_configs:\n"
        f"      - targets: ['127.0.0.1:{port}']\n"
    )


class PrometheusPeer(Peer):
    """A throwaway Prometheus; attributes host, port, url, config_path.

    ``config`` is YAML text, or a callable that gets the chosen port and
    returns YAML (for configs that mention it), or None for a 1 s self-scrape.
    """

    name = "prometheus"

    def __init__(
        self,
        config: str | Callable[[int], str] | None = None,
        *,
        files: Mapping[str, str] | None = None,
        remote_write_receiver: bool = False,
        extra_args: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.port = 0
        self._config = config
        self._files = dict(files or {})
        self.remote_write_receiver = remote_write_receiver
        self.extra_args = list(extra_args or [])
        self.config_path = self.dir / "prometheus.yml"

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"

    @property
    def remote_write_url(self) -> str:
        """Where remote_write senders push (needs ``remote_write_receiver=True``)."""
        return f"{self.url}/api/v1/write"

    def _check_requirements(self) -> None:
        require_binary("prometheus")

    def _prepare(self) -> None:
        self.port = free_tcp_port()
        if callable(self._config):
            text = self._config(self.port)
        elif self._config is None:
            text = self_scrape_config(self.port)
        else:
            text = self._config
        self.config_path.write_text(text)
        for name, content in self._files.items():
            (self.dir / name).parent.mkdir(parents=True, exist_ok=True)  # "rules/x.yml" works too
            (self.dir / name).write_text(content)

    def _launch(self) -> None:
        argv = [
            require_binary("prometheus"),
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.dir / 'tsdb'}",
            f"--web.listen-address={self.host}:{self.port}",
            "--web.enable-lifecycle",
            "--log.level=info",
        ]
        if self.remote_write_receiver:
            argv.append("--web.enable-remote-write-receiver")
        self._spawn(argv + self.extra_args)

    def _is_ready(self) -> bool:
        return http_ok(f"{self.url}/-/ready")

    # -- API helpers ---------------------------------------------------------

    def api(self, path: str, **params: str) -> Any:
        """GET ``/api/v1/<path>`` and return ``data`` (PeerError on error status)."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        status, body = http_get(f"{self.url}/api/v1/{path}{query}")
        payload = json.loads(body or b"{}")
        if status != 200 or payload.get("status") != "success":
            raise PeerError(f"prometheus /api/v1/{path} -> {status}: {body[:500]!r}")
        return payload["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; returns the ``result`` list (vector samples)."""
        return list(self.api("query", query=expr)["result"])

    def query_value(self, expr: str) -> float | None:
        """The single sample value of ``expr`` or None when it returns nothing."""
        result = self.query(expr)
        if not result:
            return None
        if len(result) > 1:
            raise PeerError(f"{expr!r} returned {len(result)} series, expected one")
        return float(result[0]["value"][1])

    def wait_for_query(
        self,
        expr: str,
        predicate: Callable[[list[dict[str, Any]]], bool] = bool,
        timeout: float = 30.0,
    ) -> list[dict[str, Any]]:
        """Poll ``expr`` until ``predicate(result)`` holds (default: non-empty)."""

        def check() -> list[dict[str, Any]] | None:
            result = self.query(expr)
            return result if predicate(result) else None

        return wait_until(check, timeout=timeout, interval=0.25, what=f"query {expr!r}")

    def targets(self) -> list[dict[str, Any]]:
        """Active scrape targets (``/api/v1/targets``)."""
        return list(self.api("targets")["activeTargets"])

    def rules(self) -> list[dict[str, Any]]:
        """Loaded rule groups (``/api/v1/rules``)."""
        return list(self.api("rules")["groups"])

    def alerts(self) -> list[dict[str, Any]]:
        """Pending and firing alerts as Prometheus sees them."""
        return list(self.api("alerts")["alerts"])

    def reload(self) -> None:
        """Re-read the config files (POST ``/-/reload``)."""
        status, body = http_post(f"{self.url}/-/reload")
        if status != 200:
            raise PeerError(f"prometheus reload -> {status}: {body[:500]!r}")


def prometheus_fixture(
    config: str | Callable[[int], str] | None = None,
    *,
    scope: str = "function",
    name: str | None = None,
    **kwargs: Any,
) -> Callable[..., Iterator[PrometheusPeer]]:
    """A pytest fixture yielding a started :class:`PrometheusPeer`."""
    return peer_fixture(lambda: PrometheusPeer(config, **kwargs), scope=scope, name=name)
