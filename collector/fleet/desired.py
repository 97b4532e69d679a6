"""Each site's desired agent config, as ``commune-collector agent-config`` generates it, with a version.

The generator is ``collector.agentconfig`` itself (the same render and the same
validation with the agent's model), so a served config and a written file
never differ. The version is a content hash of the canonical JSON: equal
configs have equal versions on every collector replica, with nothing stored.

A config the collector's copy of the agent model refuses is still served,
with its issues: the agents may run another version, and each agent's own
model decides (it refuses, keeps its last good config and reports the error,
which the fleet view shows). The collector logs the issues once per version.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from commune_collector.agentconfig import (
    Profile,
    _MissingFragments,
    _RenderError,
    agent_config_for,
    load_profile,
    validation_issues,
)
from commune_collector.fleet.settings import FleetSettings
from commune_collector.sites import Site

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DesiredConfig:
    site: str
    version: str
    config: dict[str, Any]
    issues: tuple[str, ...] = ()  # what the collector's copy of the agent model says is wrong


class DesiredError(Exception):
    """The profile cannot produce a config for this site (a missing fragment, a template error)."""


def config_version(config: dict[str, Any]) -> str:
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


class ProfileSource:
    """The profile, re-read when its file changes (a profile edit needs no collector restart)."""

    def __init__(self, settings: FleetSettings):
        self.settings = settings
        self._lock = threading.Lock()
        self._loaded: tuple[float | None, Profile] | None = None
        self._warned: set[str] = set()

    def _mtime(self) -> float | None:
        path = self.settings.profile
        try:
            return os.stat(path).st_mtime_ns if path else None
        except OSError:
            return None

    def profile(self) -> Profile:
        """The current profile; ConfigError (file:line) when the file is broken now."""
        mtime = self._mtime()
        with self._lock:
            if self._loaded is None or self._loaded[0] != mtime:
                self._loaded = (mtime, load_profile(Path(self.settings.profile) if self.settings.profile else None))
            return self._loaded[1]

    def version(self, site: Site) -> str | None:
        """Only the version a site would be served (the fleet view: no validation), None when it cannot render."""
        overrides = {"collector_url": self.settings.collector_url} if self.settings.collector_url else {}
        try:
            return config_version(agent_config_for(self.profile(), site, overrides))
        except (_RenderError, _MissingFragments):
            return None

    def desired(self, site: Site) -> DesiredConfig:
        profile = self.profile()
        overrides = {"collector_url": self.settings.collector_url} if self.settings.collector_url else {}
        try:
            config = agent_config_for(profile, site, overrides)
        except _RenderError as exc:
            raise DesiredError(f"{profile.where(*exc.loc)}: {exc.message}") from None
        except _MissingFragments as exc:
            raise DesiredError(f"{profile.filename}: the profile does not describe {exc}") from None
        issues = tuple(str(i) for i in validation_issues(config, site, profile))
        version = config_version(config)
        if issues and version not in self._warned:
            self._warned.add(version)
            log.warning("served config %s of site %s fails the agent model here: %s", version, site.id,
                        "; ".join(issues[:3]))
        return DesiredConfig(site.id, version, config, issues)
