#!/usr/bin/env python3
"""What an upstream outage costs the alerting listener per judge pass: one alert, one marker per commune.

The listener (collector/alerting/rules.py ``AlertBook.apply``) runs after every
judge pass. During an upstream outage it keeps one ``CommuneUpstreamOutage``
and one ``CommuneBehindUpstreamOutage`` per member commune; this times the
first pass (every marker created) and the steady passes (every marker checked
again), for an outage of ``--sites`` communes, with the member list given the
way the judge's views give it (``upstream_members``).

    .venv/bin/python benchmarks/upstream_alerts.py --sites 3321 --passes 20
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from commune_collector.alerting.rules import AlertBook


class Views(dict):
    """A judge snapshot as listeners see it, with no verdicts: only the outage and its members."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=3321)
    parser.add_argument("--passes", type=int, default=20)
    args = parser.parse_args()
    event = {"key": "province:x", "kind": "province", "name": "x", "province": "x", "started_at": 1.0,
             "sites": args.sites, "reporting": args.sites, "share": 1.0}
    views = Views()
    views.upstream_events = [event]
    views.upstream_members = {"province:x": [(f"x-{i:05d}", "x") for i in range(args.sites)]}
    book = AlertBook("http://collector:8470")
    started = time.perf_counter()
    fired = book.apply([], views, 2.0)
    first = time.perf_counter() - started
    steady = []
    for k in range(args.passes):
        started = time.perf_counter()
        book.apply([], views, 3.0 + k)
        steady.append(time.perf_counter() - started)
    print(json.dumps({"sites": args.sites, "alerts": len(fired), "first_pass_ms": round(first * 1000, 1),
                      "steady_pass_ms_median": round(statistics.median(steady) * 1000, 1),
                      "steady_pass_ms_max": round(max(steady) * 1000, 1)}))


if __name__ == "__main__":
    main()
