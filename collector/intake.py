"""What the collector makes of a validated report: the site's clock reading and the store's view of it.

The request handling before it (limits, decoding, validation) is HTTP and
lives in ``commune_collector.api.ingest``.
"""

from __future__ import annotations

from dataclasses import dataclass

from commune_collector.settings import ClockSettings
from commune_collector.store import journal
from commune_collector.store.base import IngestItem
from commune_common.wire import Report


@dataclass(frozen=True)
class ClockReading:
    offset_s: float
    shift_s: float
    flagged: bool


def read_clock(sent_at: float, received_at: float, rules: ClockSettings) -> ClockReading:
    """How far the site's clock is off, and by how much to move its timestamps: by all of it.

    offset = received_at - sent_at, with ``received_at`` the time the request
    arrived (``api.arrival``), so it includes only the request's transit time:
    the error is at most the one-way delay (about half the RTT). The samples are
    always moved by it, whatever its size: the collector's clock is the one kept
    right, and a site 2 h or a day off must be judged as if its clock were
    right. The site is flagged beyond ``warn_offset``. Data is never refused
    for its clock.
    """
    offset = received_at - sent_at
    return ClockReading(offset, offset, abs(offset) > rules.warn_offset)


def to_item(report: Report, received_at: float, clock: ClockReading, json_body: bytes | None = None,
            gzip_body: bytes | None = None) -> IngestItem:
    """The store's view of a validated report; the journal keeps the bytes the client sent when it can."""
    blob = journal.pack_json(json_body, gzip_body) if json_body is not None else journal.pack(report)
    return IngestItem(site=report.site, instance=report.instance, seq=report.seq, received_at=received_at,
                      sent_at=report.sent_at, clock_offset_s=clock.offset_s, shift_s=clock.shift_s,
                      clock_flagged=clock.flagged, agent_version=report.agent_version, results=report.results,
                      journal_blob=blob, spool=report.spool)
