"""Shared pieces of the fleet tests: a profile whose every check is a cheap probe of loopback."""

from __future__ import annotations

from pathlib import Path

import yaml

from commune_collector.sites import Site


def loopback_profile(port: int, *, interval: str = "1s", timeout: str = "500ms", extra_target: bool = False,
                     closed_port: int | None = None) -> str:
    """An agent profile that probes only ``127.0.0.1:port`` (TCP): never a generated real address.

    ``closed_port``: one more check, to a loopback port nobody listens on (a change that breaks a check)."""
    targets = [{"probe": "tcp", "name": "collector", "host": "127.0.0.1", "port": port}]
    if extra_target:
        targets.append({"probe": "tcp", "name": "collector-again", "host": "127.0.0.1", "port": port})
    if closed_port is not None:
        targets.append({"probe": "tcp", "name": "nobody", "host": "127.0.0.1", "port": closed_port})
    profile = {
        "collector": {"url": "{{ collector_url }}", "token_file": "/nonexistent/served-token"},
        "agent": {"state_dir": "/nonexistent/served-state"},
        "defaults": {"interval": interval, "timeout": timeout},
        "host": {"enabled": False},
        "vars": {"collector_url": f"http://127.0.0.1:{port}"},
        "links": {"fiber": {"role": "primary", "targets": targets}},
    }
    return yaml.safe_dump(profile, sort_keys=False)


def write_profile(path: Path, port: int, **kwargs: object) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(loopback_profile(port, **kwargs), encoding="utf-8")  # type: ignore[arg-type]
    tmp.replace(path)  # whole or nothing: the collector may read it any moment
    return path


def sites(n: int, province: str = "ha-noi") -> list[Site]:
    return [Site(f"hn-site-{i:02d}", f"Trung tâm Phục vụ hành chính công số {i}", province, f"Phường {i}",
                 ("fiber",)) for i in range(n)]
