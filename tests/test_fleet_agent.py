"""The agent's side of fleet management, in process: validating a served config, applying it live, the last
good config on disk, the poller's answers (a MockTransport stands in for the collector here; the real one is
in test_fleet_e2e.py), and the site token written 0600."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest

from commune_agent.app import Agent
from commune_agent.config import AgentConfig
from commune_agent.enroll import managed_config, write_secret
from commune_agent.remote_config import (
    LAST_GOOD,
    ConfigRefused,
    RemoteConfig,
    load_last_good,
    save_last_good,
    startup_config,
    validate,
)
from testsupport.peers._base import free_tcp_port, wait_until


class FakePusher:
    config_version = ""
    config_error = ""


class FixedToken:
    def read(self) -> str:
        return "cm_000000000000_" + "a" * 43


def local_config(tmp_path: Path) -> AgentConfig:
    return AgentConfig.model_validate({
        "site": {"id": "hn-site-00", "province": "ha-noi", "commune": "Phường 0"},
        "agent": {"state_dir": str(tmp_path / "state"), "listen": "127.0.0.1:0", "jitter": 0},
        "collector": {"url": "http://127.0.0.1:9", "token_file": str(tmp_path / "token"), "managed": True,
                      "config_poll_interval": "1s"}})


def served(port: int, *targets: str, interval: str = "1s", timeout: str = "500ms") -> dict[str, Any]:
    return {"site": {"id": "hn-site-00", "province": "ha-noi", "commune": "Phường 0"},
            "collector": {"url": "http://elsewhere.invalid", "token_file": "/elsewhere/token"},
            "agent": {"state_dir": "/elsewhere/state"},
            "defaults": {"interval": interval, "timeout": timeout}, "host": {"enabled": False},
            "links": [{"name": "fiber", "targets": [{"probe": "tcp", "name": t, "host": "127.0.0.1", "port": port}
                                                    for t in targets]}]}


def test_a_served_config_runs_with_this_boxs_own_agent_and_collector_sections(tmp_path: Path) -> None:
    local = local_config(tmp_path)
    cfg = validate(local, served(9, "a"))
    assert cfg.collector == local.collector and cfg.agent == local.agent
    assert [t.name for t in cfg.links[0].targets] == ["a"]


@pytest.mark.parametrize("change, words", [
    ({"defaults": {"interval": "1s", "timeout": "5s"}}, "longer than the interval"),
    ({"site": {"id": "hn-site-99", "province": "ha-noi", "commune": "x"}}, "for site 'hn-site-99'"),
    ({"links": [{"name": "fiber", "targets": [{"probe": "nosuch"}]}]}, "refused by this agent's config model"),
    ({"surprise": 1}, "refused by this agent's config model"),
])
def test_a_served_config_the_model_refuses_is_refused_with_why(tmp_path: Path, change: dict, words: str) -> None:
    with pytest.raises(ConfigRefused, match=words.replace("(", r"\(")):
        validate(local_config(tmp_path), {**served(9, "a"), **change})


def test_a_restart_starts_from_the_last_good_config_unless_it_no_longer_validates(tmp_path: Path) -> None:
    local = local_config(tmp_path)
    (tmp_path / "state").mkdir()
    assert startup_config(local) == (local, "", "")
    save_last_good(local.agent.state_dir, type("S", (), {"version": "v1", "config": served(9, "a")})())  # type: ignore[arg-type]
    assert stat.S_IMODE((tmp_path / "state" / LAST_GOOD).stat().st_mode) == 0o600
    cfg, version, error = startup_config(local)
    assert version == "v1" and not error and cfg.links[0].targets[0].name == "a"
    bad = {"version": "v0", "config": served(9, "a", timeout="5s")}
    (tmp_path / "state" / LAST_GOOD).write_text(json.dumps(bad))
    cfg, version, error = startup_config(local)
    assert cfg == local and version == "" and "longer than the interval" in error
    (tmp_path / "state" / LAST_GOOD).write_text("{not json")
    assert load_last_good(local.agent.state_dir) is None


class Collector:
    """Answers GET /api/v1/agent-config like the real one: the current version, or 304 for its ETag."""

    def __init__(self) -> None:
        self.version, self.config = "", {}
        self.requests: list[httpx.Request] = []

    def serve(self, version: str, config: dict[str, Any]) -> None:
        self.version, self.config = version, config

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        assert request.headers["authorization"].startswith("Bearer cm_")
        if request.headers.get("if-none-match") == f'"{self.version}"':
            return httpx.Response(304)
        return httpx.Response(200, json={"site": "hn-site-00", "version": self.version, "config": self.config,
                                         "issues": []}, headers={"ETag": f'"{self.version}"'})


async def test_a_new_config_is_applied_live_keeping_unchanged_checks_and_a_refused_one_changes_nothing(
        tmp_path: Path) -> None:
    port = free_tcp_port()
    local = local_config(tmp_path)
    (tmp_path / "state").mkdir()
    agent = Agent(local)
    pusher = FakePusher()
    center = Collector()
    poller = RemoteConfig(agent, pusher, local, FixedToken(),  # type: ignore[arg-type]
                          transport=httpx.MockTransport(center.handler))
    stop = asyncio.Event()
    running = asyncio.create_task(agent.scheduler.run(stop))
    await asyncio.sleep(0)  # one loop turn: run() starts its check loops before its first await
    assert agent.scheduler._stop is stop
    try:
        async with httpx.AsyncClient(transport=httpx.MockTransport(center.handler)) as client:
            center.serve("v1", served(port, "a", "b"))
            assert await poller.poll_once(client) == "applied"
            assert pusher.config_version == "v1" and not pusher.config_error
            assert sorted(agent.scheduler._tasks) == ["link/fiber/tcp/a", "link/fiber/tcp/b"]
            kept = agent.scheduler._tasks["link/fiber/tcp/a"]
            await asyncio.to_thread(wait_until, lambda: agent.latest.results.get("link/fiber/tcp/b"), timeout=10,
                                    what="a round of b")
            assert await poller.poll_once(client) == "unchanged"
            assert center.requests[-1].headers["if-none-match"] == '"v1"'

            center.serve("v2", served(port, "a", "c"))
            assert await poller.poll_once(client) == "applied"
            assert agent.scheduler._tasks["link/fiber/tcp/a"] is kept  # its loop, phase and state untouched
            assert sorted(agent.scheduler._tasks) == ["link/fiber/tcp/a", "link/fiber/tcp/c"]
            assert "link/fiber/tcp/b" not in agent.latest.results and agent.exposition.configured == 2
            assert load_last_good(local.agent.state_dir).version == "v2"  # type: ignore[union-attr]

            center.serve("v3", served(port, "a", timeout="5s"))
            assert await poller.poll_once(client) == "refused"
            assert pusher.config_version == "v2" and "config v3" in pusher.config_error
            assert sorted(agent.scheduler._tasks) == ["link/fiber/tcp/a", "link/fiber/tcp/c"]
            assert load_last_good(local.agent.state_dir).version == "v2"  # type: ignore[union-attr]
            assert await poller.poll_once(client) == "unchanged"  # the refused version is not fetched again
            assert "config v3" in pusher.config_error  # ... and its error is still reported

            center.serve("v2", served(port, "a", "c"))  # the operator reverts the profile
            assert await poller.poll_once(client) == "applied"
            assert pusher.config_version == "v2" and pusher.config_error == ""
            assert agent.scheduler._tasks["link/fiber/tcp/a"] is kept
    finally:
        stop.set()
        await running
        agent.close()


async def test_an_unreachable_collector_changes_nothing(tmp_path: Path) -> None:
    local = local_config(tmp_path)
    pusher = FakePusher()
    pusher.config_version = "v1"

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)
    poller = RemoteConfig(Agent(local), pusher, local, FixedToken(), applied="v1")  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as client:
        assert await poller.poll_once(client) == "failed"
    assert pusher.config_version == "v1" and pusher.config_error == ""


def test_the_site_token_is_written_whole_and_private(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("old")
    path.chmod(0o644)
    write_secret(path, "cm_secret")
    assert path.read_text() == "cm_secret\n" and stat.S_IMODE(path.stat().st_mode) == 0o600
    text = managed_config({"site": "hn-site-00", "province": "ha-noi", "commune": "Phường 0", "name": "T"},
                          "https://c:8470", path, tmp_path, None)
    (tmp_path / "agent.yaml").write_text(text)
    from commune_agent.config import load_agent_config
    cfg = load_agent_config(tmp_path / "agent.yaml")
    assert cfg.collector is not None and cfg.collector.managed and cfg.collector.token_file == path
