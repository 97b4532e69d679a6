"""Configuration from the center: a managed agent pulls its checks from the collector and applies them live.

Explicit, never implied: only ``collector.managed: true`` turns it on; any
other agent runs its file as before. The local file then says who the site
is and how to reach the collector; the checks (``defaults``, ``links``,
``host``, ``devices``, ``power``) come from ``GET /api/v1/agent-config``. The
local ``agent:`` and ``collector:`` sections always win over the served ones:
the box knows its state dir, its token's path and the address it reaches the
collector at; a served config can never cut the agent off from the center.

Each poll (at start, then every ``config_poll_interval``, jittered) sends the
last seen version as If-None-Match, so an unchanged config costs a 304. A new
version is validated with this agent's own model (the same checks as
``commune-agent check-config``) before anything changes; then the scheduler
swaps checks without a restart (``Scheduler.replace_checks``: unchanged checks
keep their phase and state; the spool and the instance id are untouched), and
the served config is written to ``central-config.json`` in the state dir as
the last good one, which a restart starts from. A refused or failed config
changes nothing: the last good config keeps running, and every report carries
the error (``Report.config_error``) next to the applied version until a good
version arrives.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import ValidationError

from commune_agent import __version__
from commune_agent.config import AgentConfig

if TYPE_CHECKING:
    from commune_agent.app import Agent
    from commune_agent.push.pusher import Pusher
    from commune_agent.push.token import TokenSource

log = logging.getLogger(__name__)
CONFIG_PATH = "/api/v1/agent-config"
LAST_GOOD = "central-config.json"
MAX_ERROR = 1000


class ConfigRefused(Exception):
    """The served config cannot run here; the message says why, in words for the operator."""


@dataclass(frozen=True)
class Served:
    version: str
    config: dict[str, Any]


def merged(local: AgentConfig, served: dict[str, Any]) -> dict[str, Any]:
    """The served config with this box's own ``agent:`` and ``collector:`` sections."""
    data = {k: v for k, v in served.items() if k not in ("agent", "collector")}
    data["agent"] = local.agent.model_dump(mode="json")
    assert local.collector is not None
    data["collector"] = local.collector.model_dump(mode="json", exclude_none=True)
    return data


def validate(local: AgentConfig, served: dict[str, Any]) -> AgentConfig:
    """The config to run, checked like ``commune-agent check-config``; ConfigRefused otherwise."""
    if not isinstance(served, dict):
        raise ConfigRefused("the served config is not a mapping")
    site = (served.get("site") or {}).get("id") if isinstance(served.get("site"), dict) else None
    if site != local.site.id:
        raise ConfigRefused(f"the served config is for site {site!r}, this agent is site {local.site.id!r}")
    try:
        cfg = AgentConfig.model_validate(merged(local, served))
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]]
        raise ConfigRefused("refused by this agent's config model: " + "; ".join(problems)) from None
    issues = cfg.located_issues()
    if issues:
        raise ConfigRefused("refused by this agent's config model: " +
                            "; ".join(f"{'.'.join(str(p) for p in loc)}: {msg}" for loc, msg in issues[:5]))
    from commune_agent.checks import build_checks
    try:
        build_checks(cfg)
    except Exception as exc:  # noqa: BLE001 - any failure to build means: do not apply
        raise ConfigRefused(f"cannot build its checks: {exc}") from None
    return cfg


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_last_good(state_dir: Path) -> Served | None:
    try:
        data = json.loads((Path(state_dir) / LAST_GOOD).read_text(encoding="utf-8"))
        return Served(str(data["version"]), dict(data["config"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring the last good central config %s: %s", Path(state_dir) / LAST_GOOD, exc)
        return None


def save_last_good(state_dir: Path, served: Served) -> None:
    _atomic_write(Path(state_dir) / LAST_GOOD, json.dumps({"version": served.version, "config": served.config},
                                                          ensure_ascii=False))


def startup_config(local: AgentConfig) -> tuple[AgentConfig, str, str]:
    """What a managed agent starts with: its last good central config if it still validates, else its local
    file. (config, applied version, error)."""
    last = load_last_good(local.agent.state_dir)
    if last is None:
        return local, "", ""
    try:
        return validate(local, last.config), last.version, ""
    except ConfigRefused as exc:
        log.error("the last good central config %s no longer validates (%s); starting from the local file",
                  last.version, exc)
        return local, "", f"last good config {last.version}: {exc}"[:MAX_ERROR]


class RemoteConfig:
    """Polls the collector for this site's config and applies each new version (see the module's doc)."""

    def __init__(self, agent: Agent, pusher: Pusher, local: AgentConfig, token: TokenSource, *,
                 verify: ssl.SSLContext | bool = True, transport: httpx.AsyncBaseTransport | None = None,
                 rng: random.Random | None = None, applied: str = "", error: str = ""):
        assert local.collector is not None
        self.agent = agent
        self.pusher = pusher
        self.local = local
        self.token = token
        self.url = local.collector.url.rstrip("/") + CONFIG_PATH
        self.interval = local.collector.config_poll_interval
        self._verify = verify
        self._transport = transport
        self._rng = rng or random.Random()
        self.seen = applied  # the newest version served (applied or refused): sent as If-None-Match
        self._report(applied, error)

    def _report(self, version: str, error: str) -> None:
        self.pusher.config_version = version
        self.pusher.config_error = error[:MAX_ERROR]

    async def run(self, stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(timeout=self.local.collector.timeout, verify=self._verify,  # type: ignore[union-attr]
                                     transport=self._transport,
                                     headers={"User-Agent": f"commune-agent/{__version__}"}) as client:
            while True:
                try:
                    await self.poll_once(client)
                except Exception:  # a bug must not end polling while probes go on
                    log.exception("central config: unexpected error; will ask again")
                delay = self.interval * self._rng.uniform(0.8, 1.2)
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                    return
                except TimeoutError:
                    pass

    async def poll_once(self, client: httpx.AsyncClient) -> str:
        """One request: ``unchanged``, ``applied``, ``refused`` or ``failed``."""
        from commune_agent.push.errors import PushSetupError
        try:
            headers = {"Authorization": f"Bearer {self.token.read()}"}
        except PushSetupError as exc:
            log.error("central config: %s", exc)
            return "failed"
        if self.seen:
            headers["If-None-Match"] = f'"{self.seen}"'
        try:
            response = await client.get(self.url, headers=headers)
        except httpx.HTTPError as exc:
            log.warning("central config: cannot reach %s (%s); keeping config %s", self.url, type(exc).__name__,
                        self.pusher.config_version or "from the local file")
            return "failed"
        if response.status_code == 304:
            return "unchanged"
        if response.status_code != 200:
            detail = response.text[:300].replace("\n", " ")
            log.error("central config: the collector answered HTTP %d: %s", response.status_code, detail)
            if response.status_code not in (401, 403, 429) and response.status_code < 500:
                self._report(self.pusher.config_version, f"fetch: HTTP {response.status_code}: {detail}")
            return "failed"
        return self._apply(response)

    def _apply(self, response: httpx.Response) -> str:
        try:
            body = response.json()
            served = Served(str(body["version"]), body["config"])
        except (ValueError, KeyError, TypeError) as exc:
            self._report(self.pusher.config_version, f"the collector's answer is not a config: {exc}")
            return "failed"
        self.seen = served.version
        try:
            cfg = validate(self.local, served.config)
        except ConfigRefused as exc:
            log.error("central config %s refused, keeping %s: %s", served.version,
                      self.pusher.config_version or "the local file", exc)
            self._report(self.pusher.config_version, f"config {served.version}: {exc}")
            return "refused"
        kept, stopped, started = self.agent.apply_config(cfg)
        try:
            save_last_good(self.local.agent.state_dir, served)
        except OSError as exc:
            log.error("central config %s applied but not saved as the last good one: %s", served.version, exc)
        self._report(served.version, "")
        log.info("central config %s applied: %d checks kept running, %d stopped, %d started", served.version,
                 kept, stopped, started)
        return "applied"


def start_managed(agent: Agent, pusher: Pusher, local: AgentConfig, applied: str,
                  error: str) -> list[Callable[[asyncio.Event], Any]]:
    """What ``commune-agent run`` starts beside the pusher of a managed agent: the config poller (a task body
    taking the stop event); PushSetupError when it cannot start."""
    from commune_agent.push.token import TokenSource
    from commune_agent.push.wiring import tls_verify
    assert local.collector is not None
    token = TokenSource(local.collector.token_file, local.collector.token_env)
    poller = RemoteConfig(agent, pusher, local, token, verify=tls_verify(local.collector.ca_file), applied=applied,
                          error=error)
    log.info("checks managed by the collector: asking %s every %gs (jittered)", poller.url, poller.interval)
    return [poller.run]
