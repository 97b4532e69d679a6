"""Shared pieces for the collector's tests: a real collector process, reports, certificates.

``CollectorPeer`` runs ``commune-collector serve`` as its own process on a free
loopback port with a private data dir (the same life cycle as the other real
peers in ``testsupport/peers``): config written, process started, ``/readyz``
polled, stopped by PID. The agent's end-to-end tests can use it too.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from commune_common.wire import CheckResult, Report, value_key
from testsupport.peers._base import Peer, free_tcp_port, http_ok

VENV_BIN = Path(sys.executable).parent
CLI = str(VENV_BIN / "commune-collector")


def collector_cli(config: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``commune-collector <args> --config <config>`` and capture its output."""
    argv = [CLI, *args, "--config", str(config)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {result.returncode}: {result.stderr}")
    return result


class CollectorPeer(Peer):
    """A real collector process; ``url``, ``config_path``, ``data_dir``, ``issue_token()``."""

    name = "collector"
    ready_timeout = 60.0

    def __init__(self, *, settings: dict[str, Any] | None = None, sites: Sequence[Any] = (), **kwargs: Any):
        super().__init__(**kwargs)
        self.extra_settings = settings or {}
        self.initial_sites = list(sites)
        self.port = 0
        self.config_path = self.dir / "collector.yaml"
        self.data_dir = self.dir / "data"

    @property
    def scheme(self) -> str:
        return "https" if self.extra_settings.get("tls") else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def _prepare(self) -> None:
        if not self.port:
            self.port = free_tcp_port()
        settings = {"listen": f"{self.host}:{self.port}", "data_dir": str(self.data_dir), **self.extra_settings}
        self.config_path.write_text(yaml.safe_dump(settings, allow_unicode=True))
        if self.initial_sites and not (self.dir / "sites.csv").exists():
            from commune_collector.inventory import sites_to_csv
            (self.dir / "sites.csv").write_text(sites_to_csv(self.initial_sites), encoding="utf-8")
            collector_cli(self.config_path, "sites", "import", str(self.dir / "sites.csv"))

    def _launch(self) -> None:
        self._spawn([CLI, "serve", "--config", str(self.config_path)])

    def _is_ready(self) -> bool:
        if self.scheme == "https":
            import httpx
            try:
                return httpx.get(f"{self.url}/readyz", verify=False, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False
        return http_ok(f"{self.url}/readyz")

    def restart(self) -> None:
        """Start again on the same port and data dir (after stop() or kill())."""
        self._stop_processes()
        self._procs = []
        self._launch()
        self.wait_ready(self._is_ready, what="collector to answer after restart")

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, nothing flushed: what a power cut looks like to the process."""
        import os
        import signal
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for proc in self._procs:
            proc._popen.wait(10)  # type: ignore[union-attr]

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return collector_cli(self.config_path, *args, check=check)

    def issue_token(self, site: str) -> str:
        return self.cli("token", "issue", site).stdout.strip()

    @property
    def operator_token(self) -> str:
        """A national operator's token, created once per peer (every read route needs an operator)."""
        if not getattr(self, "_operator_token", None):
            self._operator_token = self.cli("operator", "create", "tests", "--role", "national").stdout.strip()
        return self._operator_token

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.operator_token}"}

    def client(self, **kwargs: Any) -> Any:
        """An httpx.Client on this collector that reads as a national operator."""
        import httpx
        return httpx.Client(base_url=self.url, headers=self.headers, **{"timeout": 30, **kwargs})

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        # keep the data dir until the Peer cleans up; a restart() reuses it
        super().stop()


def sample_results(n: int, ts: float, *, ok: bool = True, prefix: str = "link/fiber/icmp/t") -> list[CheckResult]:
    """``n`` results that look like real probe rounds (icmp with rtt, loss and jitter)."""
    return [CheckResult(check=f"{prefix}{i}", probe="icmp", ts=ts, ok=ok, duration_s=0.05,
                        reason="" if ok else "100% loss", labels={"link": "fiber", "role": "primary",
                                                                  "target": f"t{i}"},
                        values={value_key("icmp_rtt_seconds", {"stat": "avg"}): 0.010 + i / 1000,
                                "icmp_loss_ratio": 0.0 if ok else 1.0, "icmp_jitter_seconds": 0.001})
            for i in range(n)]


def make_report(site: str, seq: int, *, n: int = 5, ts: float | None = None, sent_at: float | None = None,
                instance: str = "inst-1", ok: bool = True) -> Report:
    now = time.time()
    return Report(site=site, instance=instance, seq=seq, sent_at=now if sent_at is None else sent_at,
                  agent_version="test", results=sample_results(n, now - 1 if ts is None else ts, ok=ok))


def self_signed_cert(directory: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A throwaway certificate for ``host`` (cert file, key file), made with ``cryptography``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "commune-collector test")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


# -- a collector process that end-to-end tests stop, crash and restart, optionally in a namespace ------

_FETCH = ("import sys, urllib.request\n"
          "h = {'Authorization': 'Bearer ' + sys.argv[2]} if sys.argv[2] else {}\n"
          "r = urllib.request.Request(sys.argv[1], headers=h)\n"
          "sys.stdout.write(urllib.request.urlopen(r, timeout=3).read().decode())")


def program(name: str) -> str:
    """The console script installed beside this interpreter (the venv's), else one on PATH."""
    from testsupport.peers._base import require_binary

    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else require_binary(name)


def in_netns(netns: str | None, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", netns, *argv] if netns else argv


def http_get(url: str, netns: str | None = None, token: str | None = None) -> str:
    """GET a URL from the root namespace or from inside ``netns`` (with an operator's bearer ``token``)."""
    if netns is None:
        import urllib.request

        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
        with urllib.request.urlopen(request, timeout=3) as response:
            return response.read().decode()
    out = subprocess.run(in_netns(netns, [sys.executable, "-I", "-c", _FETCH, url, token or ""]),
                         capture_output=True, text=True, timeout=15)
    if out.returncode != 0:
        raise OSError(out.stderr.strip()[-300:])
    return out.stdout


class CollectorProcess:
    """``commune-collector serve`` with its data dir and extra settings, optionally inside a namespace;
    stopped, crashed (any signal) and restarted at will. Each start logs to its own file."""

    def __init__(self, root: Path, settings: str, host: str = "127.0.0.1", netns: str | None = None):
        from testsupport.peers._base import ManagedProcess

        self.root, self.host, self.netns = root, host, netns
        self.port = free_tcp_port()
        self.data = root / "collector-data"
        self.config = root / "collector.yaml"
        self.config.write_text(f"listen: {host}:{self.port}\ndata_dir: {self.data}\n{settings}", encoding="utf-8")
        self.process: ManagedProcess | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def cli(self, *args: str) -> str:
        return collector_cli(self.config, *args).stdout

    def get(self, path: str) -> str:
        """GET as a national operator (health paths need none; the token is made on first need)."""
        token = None if path in ("/healthz", "/readyz") else self.operator_token
        return http_get(self.url + path, self.netns, token)

    @property
    def operator_token(self) -> str:
        if not getattr(self, "_operator_token", None):
            self._operator_token = self.cli("operator", "create", "tests", "--role", "national").strip()
        return self._operator_token

    def enrol(self, site: str, token_file: Path) -> Path:
        """Import the site and write its token (mode 600) where the agent reads it."""
        inventory = self.root / "sites.csv"
        inventory.write_text(f"id,name,province,commune\n{site},Trung tâm {site},ha-noi,Phường Ba Đình\n",
                             encoding="utf-8")
        self.cli("sites", "import", str(inventory))
        token_file.write_text(self.cli("token", "issue", site).strip() + "\n")
        token_file.chmod(0o600)
        return token_file

    def start(self) -> None:
        from testsupport.peers._base import ManagedProcess, wait_until

        self.starts += 1
        argv = in_netns(self.netns, [program("commune-collector"), "serve", "--config", str(self.config)])
        self.process = ManagedProcess(argv, self.root / f"collector-{self.starts}.log")
        self.process.start()
        wait_until(lambda: "ready" in self.get("/readyz"), timeout=60, what="the collector to answer /readyz",
                   abort=self.died)

    def died(self) -> str | None:
        if self.process is not None and self.process.exit_code() is not None:
            return f"collector exited: {self.process.log_path.read_text()[-2000:]}"
        return None

    def stop(self, sig: int = 15) -> None:
        """SIGTERM (graceful, the default) or any other signal, e.g. SIGKILL for a crash."""
        import os
        import signal

        from testsupport.peers._base import wait_until

        if self.process is None or self.process.pid is None:
            return
        if sig == signal.SIGTERM:
            self.process.stop()
        else:
            os.kill(self.process.pid, sig)
            wait_until(lambda: self.process.exit_code() is not None, timeout=10, what="the collector to die")
