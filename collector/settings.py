"""The collector's configuration (``config/collector.yaml``).

Schema, defaults and validation in one place; unknown keys are refused and
errors name file, line and field (``commune_common.yamlconf``). Every default is the
one a single collector on SQLite should run with, so an empty file works.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from commune_collector.access.settings import AccessSettings
from commune_collector.alerting.settings import AlertingSettings
from commune_collector.fleet.settings import FleetSettings
from commune_collector.judge.settings import JudgeSettings
from commune_common.units import ByteSize, Duration
from commune_common.yamlconf import Loc, LocatedChecks, load_model


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseSettings(Strict):
    dsn: str | None = Field(default=None, description="PostgreSQL DSN; unset means SQLite in data_dir")
    sqlite_file: str = Field(default="collector.db", pattern=r"^[\w.-]+$")
    sqlite_synchronous: Literal["FULL", "NORMAL"] = Field(
        default="FULL", description="FULL: a 200 survives power loss (see docs/architecture.md)")
    max_pending_writes: int = Field(default=4000, ge=1, description="queued writes before 503 Retry-After")
    max_group_commit: int = Field(default=256, ge=1, description="writes committed in one transaction at most")


class TLSSettings(Strict):
    cert_file: Path | None = None
    key_file: Path | None = None

    @property
    def enabled(self) -> bool:
        return self.cert_file is not None


class IngestSettings(Strict):
    max_body_bytes: ByteSize = Field(default=4 * 1024 * 1024, ge=1024, description="raw request body limit")
    max_decompressed_bytes: ByteSize = Field(default=8 * 1024 * 1024, ge=1024,
                                             description="limit after gzip decompression (bombs get 413)")


class HttpLimits(Strict):
    """Limits of the collector's own HTTP server (commune_collector.httpguard), with or without a proxy in front."""

    max_header_bytes: ByteSize = Field(default=32 * 1024, ge=1024, le=1024 * 1024,
                                       description="request line and headers together; beyond, 431")
    header_timeout: Duration = Field(default=60.0, gt=0, description="a request's headers must arrive within this "
                                     "of its first byte (or of the connection); else 408 and the connection closed")
    body_timeout: Duration = Field(default=60.0, gt=0,
                                   description="longest pause between two reads of a body; else the connection "
                                               "is closed")
    max_connections: int = Field(default=16384, ge=1,
                                 description="open client connections at most (one kept-alive per site); beyond, "
                                             "a new connection gets 503 and is closed. Keep under the process's "
                                             "file limit (LimitNOFILE)")


class ClockSettings(Strict):
    warn_offset: Duration = Field(default=30.0, description="flag a site whose clock is off by more")
    max_correction: Duration | None = Field(
        default=None, description="deprecated and ignored (older configs still load): evidence is always placed "
                                  "on the collector's time, whatever the offset")


class AggregatorSettings(Strict):
    interval: Duration = Field(default=60.0, description="how often the journal is folded into summaries")
    process: bool = Field(default=True, description="fold in a child process (a core of its own) rather than "
                                                    "a thread of the server")
    batch_reports: int = Field(default=100_000, ge=1,
                               description="journal rows folded per step (a site's rows in a step are folded "
                                           "together, so its summaries are rewritten once)")
    sites_per_commit: int = Field(default=25, ge=1, description="sites folded per write transaction")


class RetentionSettings(Strict):
    evidence: Duration = Field(default=8 * 86400.0, description="keep hourly summaries this long")
    reports_seen: Duration = Field(default=8 * 86400.0,
                                   description="remember report ids this long (>= the agents' spool max age)")
    prune_interval: Duration = 600.0


class AuthSettings(Strict):
    cache_ttl: Duration = Field(default=5.0, description="token lookups cached this long (revocation delay)")


class RemoteWriteSettings(Strict):
    url: str | None = Field(default=None, pattern=r"^https?://",
                            description="Prometheus remote_write endpoint; unset disables forwarding")
    queue_max_samples: int = Field(default=200_000, ge=1, description="beyond this, samples are dropped and counted")
    batch_samples: int = Field(default=5000, ge=1)
    timeout: Duration = 10.0
    max_retries: int = Field(default=5, ge=0)
    ca_file: Path | None = None


class CollectorSettings(LocatedChecks, Strict):
    listen: str = Field(default="127.0.0.1:8470", description="host:port of the HTTP(S) server")
    keep_alive: Duration = Field(
        default=75.0, ge=1,
        description="how long an idle client connection stays open: longer than the agents' keep_alive (60 s, "
                    "itself longer than their 30 s push interval), so a push reuses its connection and its TLS "
                    "session instead of a handshake per report; nginx's default is 75 s too")
    data_dir: Path = Field(default=Path(".state/collector"))
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    database: DatabaseSettings = DatabaseSettings()
    tls: TLSSettings = TLSSettings()
    ingest: IngestSettings = IngestSettings()
    http: HttpLimits = HttpLimits()
    clock: ClockSettings = ClockSettings()
    aggregator: AggregatorSettings = AggregatorSettings()
    retention: RetentionSettings = RetentionSettings()
    auth: AuthSettings = AuthSettings()
    access: AccessSettings = AccessSettings()
    remote_write: RemoteWriteSettings = RemoteWriteSettings()
    alerting: AlertingSettings = AlertingSettings()
    judge: JudgeSettings = JudgeSettings()
    fleet: FleetSettings = FleetSettings()

    @model_validator(mode="before")
    @classmethod
    def _empty_sections(cls, data: object) -> object:
        """A section left with only comments (``tls:``) means its defaults, not an error."""
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if not (v is None and k in _SECTIONS)}
        return data

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535 or not host:
            raise ValueError("is not host:port (e.g. 127.0.0.1:8470 or [::]:8470)")
        return value

    def listen_address(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)

    def located_issues(self) -> list[tuple[Loc, str]]:
        issues: list[tuple[Loc, str]] = []
        dsn = self.database.dsn
        if dsn is not None and not dsn.startswith(("postgresql://", "postgres://")):  # never echo it: it may hold a password
            issues.append((("database", "dsn"), "is not a PostgreSQL URL (postgresql://user@host:5432/dbname)"))
        if (self.tls.cert_file is None) != (self.tls.key_file is None):
            missing = "key_file" if self.tls.key_file is None else "cert_file"
            issues.append((("tls", missing), "cert_file and key_file go together; set both or neither"))
        for name in ("cert_file", "key_file"):
            path = getattr(self.tls, name)
            if path is not None and not Path(path).is_file():
                issues.append((("tls", name), f"{str(path)!r}: no such file"))
        if self.ingest.max_decompressed_bytes < self.ingest.max_body_bytes:
            issues.append((("ingest", "max_decompressed_bytes"), "must be at least max_body_bytes"))
        return issues


_SECTIONS = {"database", "tls", "ingest", "http", "clock", "aggregator", "retention", "auth", "access", "remote_write"}


def load_settings(path: str | Path) -> CollectorSettings:
    """Read and validate a collector config; raises ConfigError with file:line messages."""
    return load_model(CollectorSettings, path)
