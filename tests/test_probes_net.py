"""The network probes against real peers on loopback: servers these tests start.

TCP and HTTP(S) servers on port 0 (certificates made here with
``cryptography``), Debian's dnsmasq as the DNS server, and ICMP to 127.0.0.1
and ::1: through a raw socket in this namespace (where ping_group_range
forbids unprivileged ICMP), and through an unprivileged ICMP socket inside a
namespace the test creates with the range widened and CAP_NET_RAW dropped.
Every probe runs through the runner, as the agent runs it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import os
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from commune_agent.checks import Check
from commune_agent.icmp_engine import ICMP_ECHO_REPLY, IcmpEngine
from commune_agent.probes.base import Binding, ProbeContext, ProbeResult
from commune_agent.registry import PROBES
from commune_agent.runner import run_check
from testsupport.linkemu import netns
from testsupport.peers._base import Peer, free_udp_port, require_binary, require_root

ROOT = Path(__file__).resolve().parents[1]
PAGE = "Cổng Dịch vụ công quốc gia: trung tâm phục vụ hành chính công xã".encode()
DAY = 86400.0


async def probe(kind: str, round_timeout: float = 3.0, binding: Binding | None = None,
                **fields: Any) -> ProbeResult:
    """One round of one probe through the runner, as the scheduler would run it."""
    timeout, binding = round_timeout, binding or Binding()
    spec = PROBES[kind]
    config = spec.config.model_validate({"probe": kind, **fields})
    resources: dict[str, Any] = {}
    check = Check(id=f"test/{kind}", spec=spec, config=config, interval=60.0, timeout=timeout, binding=binding)
    try:
        return await run_check(check, ProbeContext(binding=binding, timeout=timeout, resources=resources))
    finally:
        for resource in resources.values():
            resource.close()


# ---------------------------------------------------------------- TCP


@pytest.fixture
def tcp_server() -> Iterator[tuple[socket.socket, list[str]]]:
    """A listening socket on port 0 that records the address of each peer it accepts."""
    server = socket.create_server(("127.0.0.1", 0))
    peers: list[str] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, addr = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            peers.append(addr[0])
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server, peers
    stop.set()
    thread.join(5)
    server.close()


async def test_tcp_connects_and_times_the_handshake(tcp_server: tuple[socket.socket, list[str]]) -> None:
    server, _ = tcp_server
    result = await probe("tcp", host="127.0.0.1", port=server.getsockname()[1])
    assert result.ok, result.reason
    assert 0 < result.value("tcp_connect_seconds") < result.duration_s


async def test_tcp_refused_port_fails_with_reason() -> None:
    with socket.socket() as placeholder:  # a port nobody listens on: bound, never listening
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
        result = await probe("tcp", host="127.0.0.1", port=port)
    assert not result.ok
    assert result.reason == f"connect to 127.0.0.1:{port} failed: Connection refused"


async def test_tcp_over_ipv6() -> None:
    with socket.create_server(("::1", 0), family=socket.AF_INET6) as server:
        result = await probe("tcp", host="::1", port=server.getsockname()[1])
    assert result.ok, result.reason
    assert result.info["address"] == "::1"


async def test_tcp_binds_to_the_link_source_address(tcp_server: tuple[socket.socket, list[str]]) -> None:
    """A backup-link probe must leave from the backup link's address, not the routing table's pick."""
    server, peers = tcp_server
    result = await probe("tcp", host="127.0.0.1", port=server.getsockname()[1],
                         binding=Binding(source_address="127.0.0.2"))
    assert result.ok, result.reason
    _wait_for(lambda: peers, "the server to see the connection")
    assert peers == ["127.0.0.2"]


async def test_tcp_bad_source_address_is_a_reason_not_a_crash() -> None:
    result = await probe("tcp", host="127.0.0.1", port=9, binding=Binding(source_address="192.0.2.1"))
    assert not result.ok
    assert result.reason == "cannot bind to 192.0.2.1: Cannot assign requested address"


# ---------------------------------------------------------------- HTTP(S)


@dataclass
class Pki:
    ca_file: Path
    certs: dict[str, tuple[Path, Path]]  # name -> (cert, key)
    not_after: dict[str, dt.datetime]


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _make_pki(directory: Path) -> Pki:
    """A private CA and three server certificates for 127.0.0.1: valid, near expiry, expired."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("commune-monitor test CA")).issuer_name(_name("commune-monitor test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(days=400)).not_valid_after(now + dt.timedelta(days=400))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    lifetimes = {"valid": (now - dt.timedelta(days=1), now + dt.timedelta(days=90)),
                 "near-expiry": (now - dt.timedelta(days=80), now + dt.timedelta(days=3, hours=12)),
                 "expired": (now - dt.timedelta(days=30), now - dt.timedelta(days=2))}
    certs, not_after = {}, {}
    for name, (start, end) in lifetimes.items():
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(_name(f"{name}.commune.test")).issuer_name(ca.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(start).not_valid_after(end)
                .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                               critical=False)
                .sign(ca_key, hashes.SHA256()))
        cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        certs[name], not_after[name] = (cert_path, key_path), cert.not_valid_after_utc
    return Pki(ca_file, certs, not_after)


class _Handler(BaseHTTPRequestHandler):
    """/ok: the portal page; /missing: 404; /moved: 302 to /ok. Records client addresses."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.server.clients.append(self.client_address[0])  # type: ignore[attr-defined]
        if self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/ok")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        status, body = (200, PAGE) if self.path == "/ok" else (404, b"not here")
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, tls: ssl.SSLContext | None):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.clients: list[str] = []
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True)

    @property
    def base(self) -> str:
        scheme = "https" if isinstance(self.socket, ssl.SSLSocket) else "http"
        return f"{scheme}://127.0.0.1:{self.server_address[1]}"


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One plain HTTP server and one HTTPS server per certificate, all on port 0."""
    pki = _make_pki(tmp_path_factory.mktemp("pki"))
    servers = {"http": _Server(None)}
    for name, (cert, key) in pki.certs.items():
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(cert, key)
        servers[name] = _Server(tls)
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers.values()]
    for t in threads:
        t.start()
    yield {"pki": pki, **servers}
    for s in servers.values():
        s.shutdown()
        s.server_close()


async def test_http_status_time_and_body_regex(web: dict[str, Any]) -> None:
    result = await probe("http", url=f"{web['http'].base}/ok", body_regex=r"Dịch vụ công\b")
    assert result.ok, result.reason
    assert result.value("http_status_code") == 200
    assert result.value("http_content_length_bytes") == len(PAGE)
    assert 0 < result.value("http_duration_seconds") <= result.duration_s
    assert result.value("http_tls_cert_expiry_seconds") is None  # plain HTTP has no certificate


async def test_http_body_regex_mismatch_fails(web: dict[str, Any]) -> None:
    result = await probe("http", url=f"{web['http'].base}/ok", body_regex="Bảo trì hệ thống")
    assert not result.ok
    assert result.reason == "body does not match 'Bảo trì hệ thống'"
    assert result.value("http_status_code") == 200  # values are kept for a failed round


async def test_http_status_mismatch_and_expected_404(web: dict[str, Any]) -> None:
    wrong = await probe("http", url=f"{web['http'].base}/missing")
    assert not wrong.ok
    assert wrong.reason == "status 404, expected 200"
    wanted = await probe("http", url=f"{web['http'].base}/missing", expect_status=[404, 410])
    assert wanted.ok, wanted.reason


async def test_http_follows_redirects_unless_told_not_to(web: dict[str, Any]) -> None:
    followed = await probe("http", url=f"{web['http'].base}/moved")
    assert followed.ok and followed.value("http_status_code") == 200
    kept = await probe("http", url=f"{web['http'].base}/moved", follow_redirects=False)
    assert not kept.ok and kept.reason == "status 302, expected 200"


async def test_http_connection_refused_is_a_reason() -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
        result = await probe("http", url=f"http://127.0.0.1:{port}/")
    assert not result.ok
    assert result.reason.startswith(f"GET http://127.0.0.1:{port}/ failed: ")


async def test_https_with_ca_file_reports_days_left(web: dict[str, Any]) -> None:
    pki: Pki = web["pki"]
    for name in ("valid", "near-expiry"):
        before = dt.datetime.now(dt.UTC)
        result = await probe("http", url=f"{web[name].base}/ok", ca_file=str(pki.ca_file))
        after = dt.datetime.now(dt.UTC)
        assert result.ok, (name, result.reason)
        left = result.value("http_tls_cert_expiry_seconds")
        # the probe read the clock between before and after: its figure lies between these bounds
        assert (pki.not_after[name] - after).total_seconds() <= left <= (pki.not_after[name] - before).total_seconds()
    assert 3 * DAY < left < 4 * DAY  # near-expiry: 3.5 days
    assert result.info["cert_days_left"] == f"{left / DAY:.1f}"


async def test_https_untrusted_and_expired_certificates_fail(web: dict[str, Any]) -> None:
    untrusted = await probe("http", url=f"{web['valid'].base}/ok")  # system CAs do not know ours
    assert not untrusted.ok
    assert untrusted.reason.startswith(f"GET {web['valid'].base}/ok failed: TLS certificate not trusted: ")
    expired = await probe("http", url=f"{web['expired'].base}/ok", ca_file=str(web["pki"].ca_file))
    assert not expired.ok
    assert expired.reason == f"GET {web['expired'].base}/ok failed: TLS certificate not trusted: certificate has expired"


async def test_https_without_verification_still_reports_expiry(web: dict[str, Any]) -> None:
    result = await probe("http", url=f"{web['expired'].base}/ok", verify_tls=False)
    assert result.ok, result.reason
    assert -3 * DAY < result.value("http_tls_cert_expiry_seconds") < -2 * DAY + 60


async def test_http_binds_to_the_link_source_address(web: dict[str, Any]) -> None:
    server = web["http"]
    server.clients.clear()
    result = await probe("http", url=f"{server.base}/ok", binding=Binding(source_address="127.0.0.3"))
    assert result.ok, result.reason
    assert server.clients == ["127.0.0.3"]


# ---------------------------------------------------------------- DNS


class Dnsmasq(Peer):
    """Debian's dnsmasq as an authoritative-only server for commune.test on a free UDP/TCP port."""

    name = "dnsmasq"
    RECORDS = {"portal.commune.test": "198.51.100.7", "dc.commune.test": "198.51.100.8"}

    def _check_requirements(self) -> None:
        self.binary = require_binary("dnsmasq")

    def _prepare(self) -> None:
        self.port = free_udp_port()

    def _launch(self) -> None:
        argv = [self.binary, "--no-daemon", "--conf-file=/dev/null", f"--port={self.port}",
                "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv", "--no-hosts",
                "--pid-file=", "--user=root", "--local=/commune.test/", "--log-facility=-"]
        argv += [f"--host-record={name},{ip}" for name, ip in self.RECORDS.items()]
        argv.append("--host-record=dc.commune.test,2001:db8::8")
        self._spawn(argv)

    def _is_ready(self) -> bool:
        query = dns.message.make_query("portal.commune.test", "A")
        return bool(dns.query.udp(query, "127.0.0.1", port=self.port, timeout=0.5).answer)


@pytest.fixture(scope="module")
def dnsmasq() -> Iterator[Dnsmasq]:
    with Dnsmasq() as server:
        yield server


async def test_dns_resolves_with_expected_answer(dnsmasq: Dnsmasq) -> None:
    result = await probe("dns", server="127.0.0.1", port=dnsmasq.port, query="portal.commune.test",
                         expect=["198.51.100.7"])
    assert result.ok, result.reason
    assert result.value("dns_answers") == 1
    assert 0 < result.value("dns_lookup_seconds") <= result.duration_s
    assert result.info == {"rcode": "NOERROR", "answers": "198.51.100.7"}


async def test_dns_over_tcp_and_aaaa(dnsmasq: Dnsmasq) -> None:
    result = await probe("dns", server="127.0.0.1", port=dnsmasq.port, query="dc.commune.test",
                         record_type="aaaa", transport="tcp", expect=["2001:db8::8"])
    assert result.ok, result.reason


async def test_dns_wrong_answer_fails(dnsmasq: Dnsmasq) -> None:
    result = await probe("dns", server="127.0.0.1", port=dnsmasq.port, query="portal.commune.test",
                         expect=["203.0.113.9"])
    assert not result.ok
    assert result.reason == "expected one of 203.0.113.9, got 198.51.100.7"


async def test_dns_nxdomain_fails(dnsmasq: Dnsmasq) -> None:
    result = await probe("dns", server="127.0.0.1", port=dnsmasq.port, query="nowhere.commune.test")
    assert not result.ok
    assert result.reason == "server answered NXDOMAIN"
    assert result.value("dns_answers") == 0


async def test_dns_silent_server_times_out() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # bound, never answers
        silent.bind(("127.0.0.1", 0))
        silent.settimeout(5)
        result = await probe("dns", round_timeout=0.5, server="127.0.0.1", port=silent.getsockname()[1],
                             query="portal.commune.test")
        assert silent.recv(512)  # the query did arrive: silence, not a lost packet
    assert not result.ok
    assert result.reason == "timed out after 0.5s"


# ---------------------------------------------------------------- ICMP


async def test_icmp_ipv4_and_ipv6_over_raw_sockets() -> None:
    """Here ping_group_range is '1 0', so the engine must fall back to raw sockets (we are root)."""
    require_root("raw ICMP sockets need root")
    for host in ("127.0.0.1", "::1"):
        result = await probe("icmp", host=host, count=3, packet_interval="50ms", echo_timeout="1s")
        assert result.ok, result.reason
        assert result.info == {"address": host, "socket": _expected_kind()}
        assert result.value("icmp_packets_sent") == 3 and result.value("icmp_packets_received") == 3
        assert result.value("icmp_loss_ratio") == 0
        rtt = {s: result.value("icmp_rtt_seconds", stat=s) for s in ("min", "avg", "max", "stddev")}
        assert 0 < rtt["min"] <= rtt["avg"] <= rtt["max"] < 0.05
        assert result.value("icmp_jitter_seconds") is not None


def _expected_kind() -> str:
    low, high = (int(x) for x in Path("/proc/sys/net/ipv4/ping_group_range").read_text().split())
    return "unprivileged" if low <= os.getegid() <= high else "raw"


def test_icmp_unprivileged_socket_in_a_namespace_without_cap_net_raw() -> None:
    """Where ping_group_range allows it, ICMP works with no privilege at all (CAP_NET_RAW dropped)."""
    netns.require_root_netns("setpriv")
    with ExitStack() as stack:
        name = netns.namespace_pair_names()[0]
        netns.create_namespace(stack, name)  # lo up, ping_group_range widened
        config = _site_config(stack, [("127.0.0.1", {}), ("::1", {}), ("192.0.2.1", {"name": "unroutable"})])
        out = _probe_once_in(name, config, drop_raw=True)
    by_target = {c["labels"]["target"]: c for c in out["checks"]}
    for host in ("127.0.0.1", "::1"):
        assert by_target[host]["ok"], by_target[host]["reason"]
        assert by_target[host]["info"]["socket"] == "unprivileged"
    unroutable = by_target["unroutable"]  # no route in the namespace: every echo lost, none sent out
    assert not unroutable["ok"]
    assert unroutable["reason"] == "no reply to 3 echo requests to 192.0.2.1"
    assert unroutable["values"]["icmp_loss_ratio"] == 1.0


def test_icmp_without_any_permission_says_what_to_do() -> None:
    """No CAP_NET_RAW and ping_group_range '1 0' (set in a namespace of our own, whatever the host
    allows): a reason an installer can act on."""
    netns.require_root_netns("setpriv")
    with ExitStack() as stack:
        name = netns.namespace_pair_names()[0]
        netns.create_namespace(stack, name)
        netns.sysctl(name, ["net.ipv4.ping_group_range=1 0"])  # unprivileged ICMP closed here
        config = _site_config(stack, [("127.0.0.1", {})])
        proc = subprocess.run(netns.netns_exec_argv(name, ["setpriv", "--bounding-set=-net_raw", *_agent(),
                                                           "probe-once", "--json", "-c", str(config)]),
                              capture_output=True, text=True, timeout=60)
    check = json.loads(proc.stdout)["checks"][0]
    assert proc.returncode == 1
    assert check["reason"].startswith("cannot open an ICMP socket (")
    assert check["reason"].endswith("); run as root, grant CAP_NET_RAW or widen net.ipv4.ping_group_range")


async def test_raw_channels_of_two_links_never_take_each_others_replies() -> None:
    """Every raw socket sees every echo reply: the primary and backup link pinging one target with
    the same sequence number must still each get only their own (distinct ident per channel)."""
    require_root("raw ICMP sockets need root")
    engine = IcmpEngine(prefer_unprivileged=False)
    try:
        primary = engine._channel(socket.AF_INET, Binding())
        backup = engine._channel(socket.AF_INET, Binding(source_address="127.0.0.2"))
        assert primary.raw and backup.raw and primary.ident != backup.ident
        waiting = asyncio.ensure_future(engine.ping("127.0.0.1", socket.AF_INET, 1, 0.0, 0.3))
        await asyncio.sleep(0)  # let the round register its echo (seq 1 on the primary channel)
        (seq,) = primary.pending
        # the backup channel's reply for the same target and seq, as the primary socket would see it
        foreign = struct.pack("!BBHHH", ICMP_ECHO_REPLY, 0, 0, backup.ident, seq) + b"x" * 8
        engine._match(primary, b"\x45" + b"\x00" * 19 + foreign, "127.0.0.1", 0)
        assert seq in primary.pending  # ignored: still waiting for its own reply
        (rtt,) = await waiting
        assert rtt is not None and rtt > 0  # the real reply, with a real RTT (not 0 - sent time)
    finally:
        engine.close()


async def test_rounds_due_together_send_their_later_echoes_in_one_burst() -> None:
    """Echo i leaves at due + i x spacing: rounds due together but started one after the other (500
    take ~10 ms to start) send echoes 1.. in the same timer pass, as fping's bursts go; a round started
    too late for that (more than a tenth of a spacing) keeps its own time."""
    require_root("raw ICMP sockets need root")
    engine = IcmpEngine(prefer_unprivileged=False)
    passes, sends = [0], []
    run_due, send = engine._run_due, engine._send

    def counted_run_due() -> None:
        passes[0] += 1
        run_due()

    def recorded_send(rnd: Any, index: int) -> None:
        sends.append((rnd.target, index, passes[0]))
        send(rnd, index)

    engine._run_due, engine._send = counted_run_due, recorded_send  # type: ignore[method-assign]
    loop = asyncio.get_running_loop()
    try:
        due = loop.time()
        first = asyncio.ensure_future(engine.ping("127.0.0.1", socket.AF_INET, 3, 0.2, 1.0, due=due))
        await asyncio.sleep(0.01)  # the scenario, not a wait: the next rounds start 10 ms after their slot
        rounds = [first, engine.ping("127.0.0.2", socket.AF_INET, 3, 0.2, 1.0, due=due),
                  engine.ping("127.0.0.3", socket.AF_INET, 3, 0.2, 1.0, due=due - 0.05)]
        results = await asyncio.gather(*rounds)
    finally:
        engine.close()
    assert all(rtt is not None for rtts in results for rtt in rtts)
    burst = {(target, index): n for target, index, n in sends}
    for index in (1, 2):
        assert burst[("127.0.0.1", index)] == burst[("127.0.0.2", index)], f"echo {index} in one pass"
        assert burst[("127.0.0.3", index)] != burst[("127.0.0.1", index)], "the late round keeps its own time"


# ---------------------------------------------------------------- helpers


def _agent() -> list[str]:
    script = Path(sys.executable).with_name("commune-agent")
    return [str(script)] if script.exists() else [sys.executable, "-m", "commune_agent.cli"]


def _site_config(stack: ExitStack, icmp_targets: list[tuple[str, dict[str, Any]]]) -> Path:
    import tempfile

    directory = Path(tempfile.mkdtemp(prefix="probes-net-"))
    stack.callback(shutil.rmtree, directory, ignore_errors=True)
    targets = [{"probe": "icmp", "host": host, "count": 3, "packet_interval": "50ms", "echo_timeout": "500ms",
                **extra} for host, extra in icmp_targets]
    config = {"site": {"id": "netns-test", "province": "ha-noi", "commune": "Xã Thử"},
              "agent": {"state_dir": str(directory / "state")}, "host": {"enabled": False},
              "links": [{"name": "lo", "targets": targets}]}
    path = directory / "agent.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def _probe_once_in(namespace: str, config: Path, drop_raw: bool) -> dict[str, Any]:
    argv = [*(["setpriv", "--bounding-set=-net_raw"] if drop_raw else []), *_agent(), "probe-once", "--json",
            "-c", str(config)]
    proc = subprocess.run(netns.netns_exec_argv(namespace, argv), capture_output=True, text=True, timeout=60)
    assert proc.stdout, proc.stderr
    return json.loads(proc.stdout)


def _wait_for(condition: Any, what: str, timeout: float = 5.0) -> None:
    from testsupport.peers._base import wait_until

    wait_until(condition, timeout=timeout, interval=0.02, what=what)
