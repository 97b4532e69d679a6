"""The one storage interface both halves of the collector use, and its records.

SQLite (default) and PostgreSQL implement :class:`Store`; the routes, the
aggregator, the CLI and the judge only ever see this protocol, and one test
suite (``tests/test_store.py``) runs against both (gatus keeps its stores the
same way). Times are unix seconds (float) everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from commune_collector.evidence import CheckSummary
from commune_collector.maintenance.windows import MaintenanceWindow
from commune_collector.sites import Site
from commune_common.wire import CheckResult, SpoolState

Progress = Callable[[int, int], None]  # (done, total)


class StoreError(Exception):
    """A store operation failed for a reason the caller can report."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or refused the write; the client should retry (503)."""


class StoreBusy(StoreUnavailable):
    """Too many writes are queued; the client should back off and retry (503 + Retry-After)."""


class AlreadyFolded(StoreError):
    """Another process folded these journal rows first; this fold is rolled back."""


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
class RemovedSites:
    sites: int = 0
    tokens_revoked: int = 0


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
    spool: SpoolState | None = None  # the agent's backlog and drops, when it says (newer agents)


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
    spool: SpoolState | None = None  # as of the last report; None when the agent does not say

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

    def remove_sites(self, site_ids: Sequence[str], at: float) -> RemovedSites:
        """Take sites out of the inventory and revoke their live tokens, in one transaction.

        Their evidence stays until retention removes it; their agents' reports are refused from now on.
        """
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

    # -- maintenance windows (collector.maintenance) ------------------------

    def add_window(self, window: MaintenanceWindow) -> None:
        """Store a declared maintenance window."""
        ...

    def cancel_window(self, window_id: str, at: float, by: str, note: str | None = None) -> bool:
        """Cancel a live window (the record stays, with who, when and why); False when there is none by that id."""
        ...

    def get_window(self, window_id: str) -> MaintenanceWindow | None:
        """The window with this id, cancelled or not."""
        ...

    def list_windows(self, since: float | None = None) -> list[MaintenanceWindow]:
        """Windows that may cover time after ``since`` (every window when None), by start."""
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

        Only folded evidence is returned: fold the journal first (aggregator.fold_journal) to include
        reports still in the journal.
        """
        ...

    # -- maintenance -------------------------------------------------------

    # the SQL the aggregator runs (commune_collector.aggregator folds and prunes with it)

    fold_lock: AbstractContextManager[Any]  # one folder per process; across processes the row counts guard
    sites_per_commit: int

    def journal_top(self) -> int | None:
        """The highest journal id now, or None when the journal is empty."""
        ...

    def list_journal(self, after: int, upto: int, limit: int) -> list[Sequence[Any]]:
        """(id, site) of journal rows with after < id <= upto, by id, at most ``limit``."""
        ...

    def journal_rows(self, ids: list[int]) -> list[Sequence[Any]]:
        """(id, site, shift_s, body) of these journal rows, by id."""
        ...

    def commit_folds(self, work: list[tuple[str, list[int], dict[tuple[str, float], CheckSummary]]]) -> int:
        """In one transaction: delete each site's folded journal rows and merge its folded summaries into the
        stored ones; return reports folded. AlreadyFolded (all rolled back) when another process deleted
        some of those rows first: each journal row is folded exactly once."""
        ...

    def mark_aggregator_run(self) -> None:
        """Record that a folding pass finished now (for /metrics and health)."""
        ...

    def summary_buckets_before(self, before: float) -> list[float]:
        """Start times of the buckets that have summaries older than ``before``."""
        ...

    def delete_summaries_of_bucket(self, bucket: float) -> int:
        """Delete one batch of a bucket's summaries; return how many (0 when the bucket is gone)."""
        ...

    def delete_report_ranges(self, idle_since: float) -> int:
        """Delete report-id ranges not updated since ``idle_since``; return how many."""
        ...

    def stats(self) -> StoreStats:
        """Journal backlog and aggregation progress, for /metrics."""
        ...


def all_sites(store: Store, province: str | None = None) -> list[Site]:
    """Every site of the inventory (or of one province), read a page at a time."""
    sites: list[Site] = []
    while True:
        page = store.list_sites(province, 1000, len(sites))
        sites += page.items
        if not page.items or len(sites) >= page.total:
            return sites
