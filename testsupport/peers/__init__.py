"""Real peers (snmpd, snmpsim, NUT, Prometheus, Alertmanager, PostgreSQL,
blackbox/snmp exporters) started on loopback for tests, and stopped after.

Each peer is a context manager (``with SnmpdPeer() as snmpd: ...``) and has a
``*_fixture(scope=..., name=..., **kwargs)`` factory returning a pytest
fixture; ``testsupport.peers.fixtures`` is a pytest plugin with ready-made ones.
How each peer is started is in each module and in README.md here;
``scripts/install-test-deps.sh`` installs all of them.
"""

from ._base import (
    Peer,
    PeerError,
    PeerStartError,
    PeerTimeout,
    free_tcp_port,
    free_udp_port,
    in_ci,
    peer_fixture,
    require_binary,
    tcp_port_listening,
    udp_port_bound,
    wait_until,
)
from .alertmanager import AlertmanagerPeer, alertmanager_fixture
from .blackbox import BlackboxExporterPeer, blackbox_fixture
from .nut import NutPeer, nut_fixture
from .postgres import PostgresPeer, postgres_fixture
from .prometheus import PrometheusPeer, prometheus_fixture, promtool_path
from .snmp_exporter import SnmpExporterPeer, if_mib_config, snmp_exporter_fixture
from .snmpd import SnmpdPeer, SnmpV3User, snmpd_fixture
from .snmpsim import (
    DEFAULT_DEVICES,
    LOCAL_DEVICES,
    OPTIONAL_RECORDINGS,
    RECORDED_DEVICES,
    SimDevice,
    SnmpsimPeer,
    snmprec_variant,
    snmpsim_fixture,
    write_snmprec,
)

__all__ = [
    "DEFAULT_DEVICES",
    "LOCAL_DEVICES",
    "OPTIONAL_RECORDINGS",
    "RECORDED_DEVICES",
    "AlertmanagerPeer",
    "BlackboxExporterPeer",
    "NutPeer",
    "Peer",
    "PeerError",
    "PeerStartError",
    "PeerTimeout",
    "PostgresPeer",
    "PrometheusPeer",
    "SimDevice",
    "SnmpExporterPeer",
    "SnmpV3User",
    "SnmpdPeer",
    "SnmpsimPeer",
    "alertmanager_fixture",
    "blackbox_fixture",
    "free_tcp_port",
    "free_udp_port",
    "if_mib_config",
    "in_ci",
    "nut_fixture",
    "peer_fixture",
    "postgres_fixture",
    "prometheus_fixture",
    "promtool_path",
    "require_binary",
    "snmp_exporter_fixture",
    "snmpd_fixture",
    "snmprec_variant",
    "snmpsim_fixture",
    "tcp_port_listening",
    "udp_port_bound",
    "wait_until",
    "write_snmprec",
]
