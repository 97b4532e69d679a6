"""Turn a site's config into the flat list of checks the scheduler runs.

A check is one probe against one target with its interval, timeout, binding
and labels. Links, devices, power and the host all become checks, so the
scheduler, /metrics and the push path know nothing about sections.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from commune_agent.config import AgentConfig
from commune_agent.probes.base import Binding, ProbeSpec, TargetConfig
from commune_agent.registry import PROBES


@dataclass(frozen=True, repr=False)
class Check:
    """One target (or host sensor) to probe on its own interval: ``id`` names it everywhere."""

    id: str
    spec: ProbeSpec
    config: TargetConfig
    interval: float
    timeout: float
    binding: Binding = Binding()
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def probe(self) -> str:
        return self.spec.kind

    def __repr__(self) -> str:
        # the id says which check; the generated repr spelled out the spec, its metric docs and the
        # whole config (about 0.2 ms a check), and asyncio.run's SIGINT restore in Python 3.11 reprs
        # the main task's result (signal.getsignal builds a ValueError naming the handler): 1 ms at the
        # end of every 500-target probe-once
        return f"Check({self.id!r}, probe={self.spec.kind!r})"


def _link_checks(cfg: AgentConfig) -> Iterator[Check]:
    for link in cfg.links:
        binding = Binding(link.source_address, link.interface)
        for target in link.targets:
            name = target.display_name()
            yield Check(id=f"link/{link.name}/{target.probe}/{name}", spec=PROBES[target.probe], config=target,
                        interval=target.interval or cfg.defaults.interval,
                        timeout=target.timeout or cfg.defaults.timeout, binding=binding,
                        labels={"link": link.name, "role": link.role, "target": name})


def _host_checks(cfg: AgentConfig) -> Iterator[Check]:
    if cfg.host.enabled:
        yield Check(id="host", spec=PROBES["host"], config=cfg.host,
                    interval=cfg.host.interval or cfg.defaults.interval,
                    timeout=cfg.host.timeout or cfg.defaults.timeout, labels={"target": "host"})


def _device_checks(cfg: AgentConfig) -> Iterator[Check]:
    for device in cfg.devices:
        for target in device.probe_configs():
            yield Check(id=f"device/{device.name}/{target.probe}", spec=PROBES[target.probe], config=target,
                        interval=device.interval or cfg.defaults.interval,
                        timeout=device.timeout or cfg.defaults.timeout, labels=device.labels())


def _power_checks(cfg: AgentConfig) -> Iterator[Check]:
    for source in cfg.power:
        yield Check(id=f"power/{source.name}", spec=PROBES[source.probe], config=source,
                    interval=source.interval or cfg.defaults.interval,
                    timeout=source.timeout or cfg.defaults.timeout,
                    labels={"ups": source.name, "source": source.source, "target": source.name})


# one entry per config section that yields checks; sections added later register here
SECTIONS: list[Callable[[AgentConfig], Iterator[Check]]] = [_link_checks, _host_checks, _device_checks,
                                                            _power_checks]


def build_checks(cfg: AgentConfig) -> list[Check]:
    """Every check of the site, in config order."""
    return [check for section in SECTIONS for check in section(cfg)]
