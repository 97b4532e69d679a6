"""The site's clock as the collector measured it, for the site page.

Every report's timestamps are moved by the measured offset (``ingest.read_clock``),
so the page says how far off the site's clock is and that its evidence was
placed on the collector's time; beyond ``clock.warn_offset`` the line is
flagged, as ``commune_collector_site_clock_suspect`` is in /metrics.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

from commune_common.units import format_duration


def site_clock(request: Request, site: str) -> dict[str, Any] | None:
    """``{"key", "offset", "flagged"}`` for the page, or None when the site never reported (or no store)."""
    store = getattr(getattr(request.app.state, "collector", None), "store", None)
    if store is None:
        return None
    status = store.site_status([site]).get(site)
    if status is None:
        return None
    offset = float(status.clock_offset_s)  # collector minus agent: positive means the site's clock is behind
    key = "clock_right" if not status.clock_flagged else "clock_behind" if offset > 0 else "clock_ahead"
    return {"key": key, "offset": format_duration(abs(offset)), "flagged": bool(status.clock_flagged)}
