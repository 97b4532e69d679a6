"""The collector's own disk, database and certificate on /metrics, so their alerts come before the outage.

A full disk stops ingest (agents spool, then drop their oldest data), a
database that only grows means retention stopped pruning, and an expired
certificate makes every agent refuse the collector at the same moment. The
families are computed at scrape time; a missing file means an absent sample,
never an error page.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

PREFIX = "commune_collector_"


def host_metrics(settings: Any, store: Any) -> Callable[[], Iterator[Metric]]:
    """A metric source for ``CollectorMetrics(extra=[...])`` over these settings and this store."""
    cert = _CertExpiry(settings.tls.cert_file)

    def collect() -> Iterator[Metric]:
        yield from _disk(Path(settings.data_dir))
        yield _database(settings, store)
        expiry = GaugeMetricFamily(PREFIX + "tls_cert_expiry_timestamp_seconds",
                                   "When the collector's own TLS certificate (tls.cert_file) expires; absent "
                                   "without TLS.")
        when = cert.not_after()
        if when is not None:
            expiry.add_metric([], when)
        yield expiry

    return collect


def _disk(data_dir: Path) -> Iterator[Metric]:
    free = GaugeMetricFamily(PREFIX + "data_dir_free_bytes", "Free bytes on the file system of data_dir.")
    size = GaugeMetricFamily(PREFIX + "data_dir_size_bytes", "Size of the file system of data_dir.")
    try:
        usage = shutil.disk_usage(data_dir)
    except OSError:
        pass
    else:
        free.add_metric([], float(usage.free))
        size.add_metric([], float(usage.total))
    yield from (free, size)


def _database(settings: Any, store: Any) -> Metric:
    family = GaugeMetricFamily(PREFIX + "database_bytes", "Size of the collector's database (SQLite files "
                               "with their WAL, or the PostgreSQL database).")
    measure = getattr(store, "database_bytes", None)
    if callable(measure):
        try:
            family.add_metric([], float(measure()))
        except Exception:  # noqa: BLE001 - a failing size query must not break /metrics
            pass
        return family
    if getattr(settings.database, "dsn", None) is None:
        base = Path(settings.data_dir) / settings.database.sqlite_file
        files = [base, base.with_name(base.name + "-wal")]
        sizes = [f.stat().st_size for f in files if f.exists()]
        if sizes:
            family.add_metric([], float(sum(sizes)))
    return family


class _CertExpiry:
    """The certificate's notAfter, read again only when the file changes (a renewal)."""

    def __init__(self, path: Path | None):
        self.path = path
        self._seen: tuple[float, float | None] | None = None

    def not_after(self) -> float | None:
        if self.path is None:
            return None
        try:
            mtime = self.path.stat().st_mtime
        except OSError:
            return None
        if self._seen is None or self._seen[0] != mtime:
            self._seen = (mtime, _read_not_after(self.path))
        return self._seen[1]


def _read_not_after(path: Path) -> float | None:
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None
    return cert.not_valid_after_utc.timestamp()
