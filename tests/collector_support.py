"""Shared pieces for the collector's tests: a real collector process, reports, certificates.

``CollectorPeer`` runs ``commune-collector serve`` as its own process on a free
loopback port with a private data dir (the same life cycle as the other real
peers in ``tests/peers``): config written, process started, ``/readyz``
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

from common.wire import CheckResult, Report, value_key
from tests.peers._base import Peer, free_tcp_port, http_ok

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
            from collector.inventory import sites_to_csv
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
