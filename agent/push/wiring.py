"""How ``commune-agent run`` sets the pusher up: spool, token, TLS, its sink and its /metrics."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from commune_agent.config import PushSettings
from commune_agent.push.errors import PushSetupError
from commune_agent.push.metrics import PushCollector
from commune_agent.push.pusher import Pusher
from commune_agent.push.token import TokenSource
from commune_agent.spool import FILE_NAME, DropCounts, Spool, SpoolError

if TYPE_CHECKING:
    from commune_agent.app import Agent

log = logging.getLogger("commune_agent.push")


def open_spool(state_dir: Path, settings: PushSettings, clock: Callable[[], float] = time.time) -> Spool:
    try:
        return Spool(Path(state_dir) / FILE_NAME, max_bytes=settings.spool_max_bytes,
                     max_age=settings.spool_max_age, clock=clock, drops=DropCounts())
    except (SpoolError, OSError) as exc:
        raise PushSetupError(f"agent.state_dir: {exc}") from None


def build_pusher(agent: Agent, **kwargs: Any) -> Pusher:
    """The pusher for ``agent``, registered as its sink and on its /metrics registry."""
    settings = agent.config.collector
    if settings is None:
        raise PushSetupError("no collector section in the config: nothing to push to")
    _warn_cleartext(settings.url)
    verify = tls_verify(settings.ca_file)
    token = TokenSource(settings.token_file, settings.token_env)
    spool = open_spool(agent.config.agent.state_dir, settings)
    pusher = Pusher(settings, agent.config.site.id, spool, token, verify=verify, **kwargs)
    agent.sinks.append(pusher.sink)
    agent.registry.register(PushCollector(pusher))
    log.info("pushing to %s every %gs as instance %s; spool %s (%d batches pending)", settings.url,
             settings.push_interval, spool.instance, spool.path, spool.stats.reports)
    return pusher


def start_pusher(agent: Agent) -> Callable[[asyncio.Event], Awaitable[None]]:
    """What ``commune-agent run`` calls: a task body taking the agent's stop event."""
    return build_pusher(agent).run


def tls_verify(ca_file: Path | None) -> ssl.SSLContext | bool:
    """System CAs by default; only ``ca_file`` when given (a private CA for the collector)."""
    if ca_file is None:
        return True
    try:
        return ssl.create_default_context(cafile=str(ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise PushSetupError(f"collector.ca_file {ca_file}: not a readable PEM CA bundle: {exc}") from None


def _warn_cleartext(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "::1", "localhost"):
        log.warning("collector.url %s is plain http: the site token crosses the network in clear", url)
