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
    builtin_profile_text,
    parse_profile,
    validation_issues,
)
from commune_collector.fleet.settings import FleetSettings
from commune_collector.sites import Site
from commune_common.yamlconf import ConfigError, ConfigIssue

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


def _text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Baseline:
    """The profile every site is served outside a rollout: its text, the hash of it, the parsed profile."""

    text: str
    hash: str
    profile: Profile


@dataclass(frozen=True)
class Serving:
    """While a rollout is open: the canaries of a running one get the candidate, every other site the base."""

    rollout_id: str
    running: bool
    base: Profile
    candidate: Profile
    canaries: frozenset[str]


class ProfileSource:
    """The profile, re-read when its file changes (a profile edit needs no collector restart).

    A promoted rollout's candidate replaces the file's profile for as long as the file still holds the
    profile that rollout started from (``promoted``): installing the candidate as the file, or editing
    the file, makes the file the source again. An open rollout (``serving``) decides per site.
    """

    def __init__(self, settings: FleetSettings):
        self.settings = settings
        self._lock = threading.Lock()
        self._loaded: tuple[object, Baseline] | None = None
        self._warned: set[str] = set()
        self.serving: Serving | None = None
        self.promoted: tuple[tuple[str, str, str], ...] = ()  # (base_hash, candidate text, its name), in order
        self.overrides = {"collector_url": settings.collector_url} if settings.collector_url else {}

    def _mtime(self) -> float | None:
        path = self.settings.profile
        try:
            return os.stat(path).st_mtime_ns if path else None
        except OSError:
            return None

    def _read(self) -> tuple[str, str]:
        path = self.settings.profile
        if not path:
            return builtin_profile_text(), "<built-in agent_profile.yaml>"
        try:
            return Path(path).read_text(encoding="utf-8"), str(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError([ConfigIssue(str(path), None, "", f"cannot read: {exc}")]) from None

    def baseline(self) -> Baseline:
        """The profile served outside a rollout; ConfigError (file:line) when the file is broken now."""
        key = (self._mtime(), self.promoted)
        with self._lock:
            if self._loaded is None or self._loaded[0] != key:
                text, name = self._read()
                current = Baseline(text, _text_hash(text), parse_profile(text, name))
                for base_hash, candidate, candidate_name in self.promoted:
                    if base_hash == current.hash:
                        current = Baseline(candidate, _text_hash(candidate), parse_profile(candidate, candidate_name))
                self._loaded = (key, current)
            return self._loaded[1]

    def profile(self, site: str | None = None) -> Profile:
        """The profile ``site`` is served now (the baseline when no rollout is open)."""
        serving = self.serving
        if serving is None:
            return self.baseline().profile
        return serving.candidate if serving.running and site in serving.canaries else serving.base

    def render(self, profile: Profile, site: Site) -> dict[str, Any]:
        """The site's config from ``profile``; DesiredError (profile file:line) when it cannot render."""
        try:
            return agent_config_for(profile, site, self.overrides)
        except _RenderError as exc:
            raise DesiredError(f"{profile.where(*exc.loc)}: {exc.message}") from None
        except _MissingFragments as exc:
            raise DesiredError(f"{profile.filename}: the profile does not describe {exc}") from None

    def version(self, site: Site) -> str | None:
        """Only the version a site would be served (the fleet view: no validation), None when it cannot render."""
        try:
            return config_version(self.render(self.profile(site.id), site))
        except DesiredError:
            return None

    def desired(self, site: Site) -> DesiredConfig:
        profile = self.profile(site.id)
        config = self.render(profile, site)
        issues = tuple(str(i) for i in validation_issues(config, site, profile))
        version = config_version(config)
        if issues and version not in self._warned:
            self._warned.add(version)
            log.warning("served config %s of site %s fails the agent model here: %s", version, site.id,
                        "; ".join(issues[:3]))
        return DesiredConfig(site.id, version, config, issues)
