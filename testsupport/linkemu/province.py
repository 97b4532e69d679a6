"""A province in namespaces: communes behind one shared emulated upstream link, the center on the host.

```
 commune ns c0 ─veth─┐
 commune ns c1 ─veth─┤ hub ns (the province's aggregation router, a bridge)
 ...                 ├─ emulated link (emulator.py) ── dc ns (the provincial data center)
 commune ns cN ─veth─┘
                     └─ veth ── host (the national collector, reached without the data center)
```

Cutting the emulated link (``cut_upstream``) takes every commune's path to
the data center at once while their reports still reach the collector, as a
failed provincial data center or backbone does; cutting one commune's veth
(``cut_commune``) takes that commune off the network alone, reports and all.
Addresses come from 198.19.0.0/16 (inside 198.18.0.0/15, which only test
namespaces use); the host gets one veth address and one route to the
communes' LAN, both gone with the hub namespace.
"""

from __future__ import annotations

import random
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from .netns import ImpairedLink, create_namespace, impaired_link, ip, netns_exec_argv, sysctl


@dataclass(frozen=True)
class Commune:
    """One commune's namespace, its address on the province LAN and its veth's name on the hub."""

    netns: str
    address: str
    hub_dev: str


@dataclass
class Province:
    """The live topology; see the module docstring."""

    upstream: ImpairedLink  # near end: the hub, far end: the data center
    communes: list[Commune]
    host_address: str  # where a process on the host listens for the communes (the collector)

    @property
    def hub(self) -> str:
        return self.upstream.ns_near

    @property
    def dc(self) -> str:
        return self.upstream.ns_far

    @property
    def dc_address(self) -> str:
        """The data center's address: what each commune's primary link probes."""
        return self.upstream.far_ip

    def cut_upstream(self) -> None:
        self.upstream.set(loss=1.0)

    def restore_upstream(self) -> None:
        self.upstream.set(loss=0.0)

    def cut_commune(self, index: int) -> None:
        ip("-n", self.hub, "link", "set", self.communes[index].hub_dev, "down")

    def restore_commune(self, index: int) -> None:
        ip("-n", self.hub, "link", "set", self.communes[index].hub_dev, "up")

    def popen(self, index: int, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """A process inside commune ``index``'s namespace (the caller reaps it)."""
        return subprocess.Popen(netns_exec_argv(self.communes[index].netns, argv), **kwargs)


@contextmanager
def province_behind_upstream(communes: int, *, delay_ms: float = 2.0, seed: int = 1) -> Iterator[Province]:
    """Build the topology for ``communes`` communes; remove every namespace, veth and route after."""
    if not 1 <= communes <= 200:
        raise ValueError("communes must be 1..200")
    lan, uplink = random.sample(range(1, 255), 2)
    with ExitStack() as stack:
        link = stack.enter_context(impaired_link(delay_ms=delay_ms, seed=seed, ipv6=False))
        hub, dc = link.ns_near, link.ns_far
        sysctl(hub, ["net.ipv4.ip_forward=1"])
        ip("-n", hub, "link", "add", "br0", "type", "bridge")
        ip("-n", hub, "addr", "add", f"198.19.{lan}.1/24", "dev", "br0")
        ip("-n", hub, "link", "set", "br0", "up")
        ip("-n", dc, "route", "add", f"198.19.{lan}.0/24", "via", link.near_ip)
        host_address = _host_uplink(stack, hub, uplink, lan)
        members = [_commune(stack, hub, f"{hub[:-2]}-c{i}", i, lan) for i in range(communes)]
        yield Province(link, members, host_address)


def _host_uplink(stack: ExitStack, hub: str, uplink: int, lan: int) -> str:
    """The hub's veth to the host: the host reaches the communes' LAN through it (and only it)."""
    host_dev = f"cmup{uplink}"
    ip("link", "add", host_dev, "type", "veth", "peer", "name", "up0", "netns", hub)
    stack.callback(subprocess.run, ["ip", "link", "del", host_dev], capture_output=True, timeout=10)
    ip("addr", "add", f"198.19.{uplink}.1/30", "dev", host_dev)
    ip("link", "set", host_dev, "up")
    ip("-n", hub, "addr", "add", f"198.19.{uplink}.2/30", "dev", "up0")
    ip("-n", hub, "link", "set", "up0", "up")
    ip("route", "add", f"198.19.{lan}.0/24", "via", f"198.19.{uplink}.2", "dev", host_dev)
    return f"198.19.{uplink}.1"


def _commune(stack: ExitStack, hub: str, name: str, index: int, lan: int) -> Commune:
    """One commune namespace on the hub's bridge, its default route through the hub."""
    create_namespace(stack, name, ipv6=False)
    address, hub_dev = f"198.19.{lan}.{10 + index}", f"c{index}"
    ip("link", "add", "eth0", "netns", name, "type", "veth", "peer", "name", hub_dev, "netns", hub)
    ip("-n", name, "addr", "add", f"{address}/24", "dev", "eth0")
    ip("-n", name, "link", "set", "eth0", "up")
    ip("-n", name, "route", "add", "default", "via", f"198.19.{lan}.1")
    ip("-n", hub, "link", "set", hub_dev, "master", "br0")
    ip("-n", hub, "link", "set", hub_dev, "up")
    return Commune(name, address, hub_dev)
