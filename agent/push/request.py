"""One POST of a report and what it came to (``PushOutcome``): acked, rejected for good, retry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import httpx
import msgspec

from commune_agent.push.backoff import retry_after_seconds
from commune_common.wire import Ack

REPORTS_PATH = "/api/v1/reports"
PERMANENT = frozenset({400, 413, 415, 422})  # the report itself is bad: resending it can never succeed
AUTH = frozenset({401, 403})  # the agent's token is bad: every report would fail alike, so hold them all
_ack_decoder = msgspec.json.Decoder(Ack)


@dataclass(frozen=True)
class PushOutcome:
    """What one POST came to."""

    kind: Literal["acked", "rejected", "retry"]
    reason: str = ""  # failure kind for metrics: connect, timeout, http_503 ...
    status: int | None = None
    detail: str = ""
    delivered: bool = True  # False only when the request provably never reached the collector
    retry_after: float | None = None
    ack: Ack | None = None


def classify(response: httpx.Response, seq: int, now: float) -> PushOutcome:
    """Map the collector's answer to acked / rejected for good / retry."""
    status = response.status_code
    if status == 200:
        try:
            ack = _ack_decoder.decode(response.content)
        except msgspec.DecodeError as exc:  # e.g. a captive portal's HTML page: nothing was stored
            return PushOutcome("retry", "bad_ack", status, f"not an Ack: {exc}")
        if ack.accepted != seq:
            return PushOutcome("retry", "bad_ack", status, f"acked seq {ack.accepted}, sent {seq}")
        return PushOutcome("acked", status=status, ack=ack)
    detail = response.text[:300].replace("\n", " ")
    if status in PERMANENT:
        return PushOutcome("rejected", f"http_{status}", status, detail)
    if status in AUTH:  # fixed by the operator (token file, site id), not by dropping data
        return PushOutcome("retry", f"http_{status}", status, detail)
    return PushOutcome("retry", f"http_{status}", status, detail,
                   retry_after=retry_after_seconds(response.headers.get("retry-after"), now))
