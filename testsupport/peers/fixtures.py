"""Shared pytest fixtures backed by real peers on loopback.

Load from the root conftest with ``pytest_plugins = ["testsupport.peers.fixtures"]``.

Session-scoped (started once, on first use, stopped at the end):
``snmpd``, ``snmpsim``, ``nut_ups``, ``postgres``, ``alertmanager``.
Tests that change ``nut_ups`` state should call ``nut_ups.reset()`` after.

Function-scoped factories, for peers each test configures itself:
``prometheus_factory(config, **kw)``, ``blackbox_factory(config)``,
``snmp_exporter_factory(config)``; everything they started is stopped when
the test ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from ._base import Peer
from .alertmanager import alertmanager_fixture
from .blackbox import BlackboxExporterPeer
from .nut import nut_fixture
from .postgres import postgres_fixture
from .prometheus import PrometheusPeer
from .snmp_exporter import SnmpExporterPeer
from .snmpd import snmpd_fixture
from .snmpsim import snmpsim_fixture

PeerT = TypeVar("PeerT", bound=Peer)

snmpd = snmpd_fixture(name="snmpd")
snmpsim = snmpsim_fixture(name="snmpsim")
nut_ups = nut_fixture(name="nut_ups")
postgres = postgres_fixture(name="postgres")
alertmanager = alertmanager_fixture(name="alertmanager")


def _factory(cls: Callable[..., PeerT]) -> Iterator[Callable[..., PeerT]]:
    """Yield a function that starts ``cls(*args, **kw)``; stop all at teardown."""
    started: list[PeerT] = []

    def make(*args: Any, **kwargs: Any) -> PeerT:
        peer = cls(*args, **kwargs)
        started.append(peer)
        peer.start()
        return peer

    try:
        yield make
    finally:
        for peer in reversed(started):
            peer.stop()


@pytest.fixture
def prometheus_factory() -> Iterator[Callable[..., PrometheusPeer]]:
    """``prometheus_factory(config_yaml_or_callable, files=..., remote_write_receiver=...)``."""
    yield from _factory(PrometheusPeer)


@pytest.fixture
def blackbox_factory() -> Iterator[Callable[..., BlackboxExporterPeer]]:
    """``blackbox_factory(config_yaml=None)`` -> started BlackboxExporterPeer."""
    yield from _factory(BlackboxExporterPeer)


@pytest.fixture
def snmp_exporter_factory() -> Iterator[Callable[..., SnmpExporterPeer]]:
    """``snmp_exporter_factory(config_yaml=None)`` -> started SnmpExporterPeer."""
    yield from _factory(SnmpExporterPeer)
