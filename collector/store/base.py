"""The one storage interface both halves of the collector use, and its records.

SQLite (default) and PostgreSQL implement :class:`Store`; the routes, the
aggregator, the CLI and the judge only ever see this protocol, and one test
suite (``tests/test_store.py``) runs against both (gatus keeps its stores the
same way). Times are unix seconds (float) everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Protocol

from commune_collector.evidence import CheckSummary
from commune_common.wire import CheckResult

Progress = Callable[[int, int], None]  # (done, total)


class StoreError(Exception):
    """A store operation failed for a reason the caller can report."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or refused the write; the client should retry (503)."""


class StoreBusy(StoreUnavailable):
    """Too many writes are queued; the client should back off and retry (503 + Retry-After)."""


@dataclass(frozen=True)
class Site:
    """One commune service center as the inventory describes it."""

    id: str
    name: str
    province: str
    commune: str
    links: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    power: tuple[str, ...] = ()


@dataclass(frozen=True)
class SitePage:
    items: list[Site]
    total: int


@dataclass(frozen=True)
class ImportCounts:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0


@dataclass(frozen=True)
class TokenRecord:
    """A per-site token; only the hash of its secret is ever stored."""

    id: str
    site: str
    hash: str
    created_at: float
    revoked_at: float | None = None


@dataclass(frozen=True)
class OperatorRecord:
    """An operator's (or Prometheus's) credential: role, scope, expiry; only the secret's hash is stored."""

    id: str
    name: str
    role: str  # collector.access.roles.Role
    province: str | None
    hash: str
    created_at: float
    expires_at: float | None = None
    revoked_at: float | None = None


@dataclass(frozen=True)
class IngestItem:
    """One validated report, ready to be stored in one transaction."""

    site: str
    instance: str
    seq: int
    received_at: float
    sent_at: float
    clock_offset_s: float
    shift_s: float  # added to every agent timestamp of this report (0 when not corrected)
    clock_flagged: bool
    agent_version: str
    results: Sequence[CheckResult]
    journal_blob: bytes  # the report as stored in the journal (collector.journal)


@dataclass(frozen=True)
class IngestOutcome:
    duplicate: bool


@dataclass(frozen=True)
class LatestValue:
    """The most recent round of one check of one site (corrected time)."""

    check: str
    probe: str
    ts: float
    ok: bool
    duration_s: float
    reason: str
    labels: dict[str, str] = field(default_factory=dict)
    values: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class SiteStatus:
    """What the collector knows about a site's agent from its reports."""

    site: str
    instance: str
    agent_version: str
    last_seq: int
    last_report_at: float
    last_sent_at: float
    clock_offset_s: float
    clock_flagged: bool


@dataclass(frozen=True)
class PruneCounts:
    summaries: int = 0
    report_ranges: int = 0


@dataclass(frozen=True)
class StoreStats:
    journal_reports: int
    journal_oldest_received_at: float | None
    last_aggregation_at: float | None


@dataclass
class WriteStats:
    """Where a store's writer spends its time: waiting for the database's write lock, or holding it."""

    groups: int = 0  # transactions committed (each a group of jobs, one fsync)
    jobs: int = 0
    lock_wait_seconds: float = 0.0
    held_seconds: float = 0.0


class Store(Protocol):
    """Everything the collector persists. Implementations are thread-safe."""

    dialect: str

    def migrate(self) -> list[str]:
        """Apply pending schema migrations in order; return the names applied now."""
        ...

    def check_ready(self) -> str | None:
        """None when the database answers and every migration is applied, else why not."""
        ...

    def close(self) -> None:
        """Finish queued writes and close every connection."""
        ...

    @property
    def write_stats(self) -> WriteStats:
        """This process's writer: groups committed, time waiting for the write lock and holding it."""
        ...

    # -- inventory ---------------------------------------------------------

    def upsert_sites(self, sites: Sequence[Site], progress: Progress | None = None) -> ImportCounts:
        """Insert or update sites by id in ONE transaction (an import is all or nothing)."""
        ...

    def list_sites(self, province: str | None = None, limit: int = 100, offset: int = 0) -> SitePage:
        """Sites ordered by id, optionally of one province, with the total before paging."""
        ...

    def get_site(self, site_id: str) -> Site | None:
        """One site, or None when the inventory does not have it."""
        ...

    def count_sites(self) -> dict[str, int]:
        """Number of sites per province slug (roll-ups divide by it)."""
        ...

    # -- tokens ------------------------------------------------------------

    def add_token(self, token: TokenRecord) -> None:
        """Store a new token record (hash only); the site must exist (StoreError otherwise)."""
        ...

    def get_token(self, token_id: str) -> TokenRecord | None:
        """The token with this id, revoked or not."""
        ...

    def revoke_tokens(self, site_or_token_id: str, at: float) -> int:
        """Revoke one token by id, or every live token of a site; return how many."""
        ...

    def list_tokens(self, site: str | None = None) -> list[TokenRecord]:
        """Token records (never secrets), newest first."""
        ...

    # -- operators' credentials (collector.access) -------------------------

    def add_operator(self, record: OperatorRecord) -> None:
        """Store a new operator credential (hash only)."""
        ...

    def get_operator(self, token_id: str) -> OperatorRecord | None:
        """The operator credential with this id, revoked or expired or not."""
        ...

    def revoke_operators(self, name_or_token_id: str, at: float) -> int:
        """Revoke one credential by id, or every live credential of an operator name; return how many."""
        ...

    def list_operators(self, name: str | None = None) -> list[OperatorRecord]:
        """Operator credentials (never secrets), newest first."""
        ...

    # -- ingest ------------------------------------------------------------

    def submit_ingest(self, item: IngestItem) -> Future[IngestOutcome]:
        """Queue a report for the next group commit; the future resolves once it is durable.

        Raises StoreBusy at once when the write queue is full. A report whose
        (site, instance, seq) was stored before resolves with duplicate=True
        and changes nothing.
        """
        ...

    def ingest(self, item: IngestItem) -> IngestOutcome:
        """submit_ingest and wait: for the CLI, tests and tools."""
        ...

    # -- reads -------------------------------------------------------------

    def latest(self, site: str) -> dict[str, LatestValue]:
        """The newest round of every check of the site, by check id."""
        ...

    def site_status(self, sites: Sequence[str] | None = None) -> dict[str, SiteStatus]:
        """Last report, clock offset and clock flag of every site that has reported."""
        ...

    def summaries(self, since: float, until: float, sites: Sequence[str] | None = None) -> list[CheckSummary]:
        """Hourly summaries whose bucket overlaps [since, until), one per (site, check, bucket).

        Only folded evidence is returned: call aggregate_now() first to include
        reports still in the journal.
        """
        ...

    # -- maintenance -------------------------------------------------------

    def aggregate_now(self, max_reports: int | None = None) -> int:
        """Fold journal rows received so far into summaries; return reports folded.

        Safe to call from several threads or processes at once: each journal
        row is folded exactly once.
        """
        ...

    def flush(self) -> int:
        """Alias of aggregate_now() with no bound."""
        ...

    def prune(self, now: float, evidence_age: float, seen_age: float) -> PruneCounts:
        """Delete summaries older than ``evidence_age`` and report-id ranges idle for ``seen_age``."""
        ...

    def stats(self) -> StoreStats:
        """Journal backlog and aggregation progress, for /metrics."""
        ...
