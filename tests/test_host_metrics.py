"""The collector's disk, database size and own certificate expiry on /metrics (what the platform alerts read)."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from types import SimpleNamespace

from prometheus_client import CollectorRegistry
from prometheus_client.registry import Collector

from commune_collector.host_metrics import host_metrics


def self_signed(path: Path, not_after: dt.datetime) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "collector.test")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(not_after - dt.timedelta(days=90))
            .not_valid_after(not_after).sign(key, hashes.SHA256()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def registry_for(settings: SimpleNamespace) -> CollectorRegistry:
    source = host_metrics(settings, store=object())

    class Source(Collector):
        def collect(self):
            yield from source()

    registry = CollectorRegistry()
    registry.register(Source())
    return registry


def settings_for(tmp_path: Path, cert: Path | None) -> SimpleNamespace:
    return SimpleNamespace(data_dir=tmp_path, tls=SimpleNamespace(cert_file=cert),
                           database=SimpleNamespace(dsn=None, sqlite_file="collector.db"))


def test_disk_database_and_certificate(tmp_path):
    (tmp_path / "collector.db").write_bytes(b"x" * 4096)
    (tmp_path / "collector.db-wal").write_bytes(b"x" * 1024)
    not_after = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    self_signed(tmp_path / "cert.pem", not_after)
    registry = registry_for(settings_for(tmp_path, tmp_path / "cert.pem"))
    assert registry.get_sample_value("commune_collector_database_bytes") == 5120
    assert registry.get_sample_value("commune_collector_tls_cert_expiry_timestamp_seconds") == not_after.timestamp()
    free = registry.get_sample_value("commune_collector_data_dir_free_bytes")
    assert free is not None and 0 < free <= registry.get_sample_value("commune_collector_data_dir_size_bytes")
    renewed = dt.datetime(2031, 1, 1, tzinfo=dt.UTC)
    self_signed(tmp_path / "cert.pem", renewed)
    os.utime(tmp_path / "cert.pem", (1, 1))  # a renewal changes the file: the metric follows it
    assert registry.get_sample_value("commune_collector_tls_cert_expiry_timestamp_seconds") == renewed.timestamp()


def test_without_tls_or_files_the_samples_are_absent_not_errors(tmp_path):
    registry = registry_for(settings_for(tmp_path / "missing", None))
    assert registry.get_sample_value("commune_collector_tls_cert_expiry_timestamp_seconds") is None
    assert registry.get_sample_value("commune_collector_database_bytes") is None
    assert registry.get_sample_value("commune_collector_data_dir_free_bytes") is None
