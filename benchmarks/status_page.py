#!/usr/bin/env python3
"""How fast the status page answers with the real fleet: 3,321 communes in 34 provinces.

A real judge (shipped ``config/criteria.yaml``) judges a generated inventory
over synthetic hourly evidence: a third of the sites healthy, a third with a
failing criterion, a third silent (unknown, every criterion listed with its
reason: the heaviest rows a province page renders). The pages are then served
by the collector's own router through an ASGI client (no network in the
figure) and each is fetched ``--repeat`` times:

- ``/``: the national table (34 provinces x 6 items) with the burn-up chart;
- ``/p/ho-chi-minh``: the largest province (168 communes, first page of 50);
- ``/p/ho-chi-minh?state=unknown``: a filtered list;
- ``/s/<site>``: one commune with every criterion.

Prints median and worst latency and the gzip size of each page.

Usage: python benchmarks/status_page.py [--sites 3321] [--repeat 20]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

warnings.filterwarnings("ignore", category=DeprecationWarning)  # starlette's note on TestClient's httpx

from fastapi import FastAPI  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from commune_collector.evidence import BUCKET_SECONDS, bucket_of  # noqa: E402
from commune_collector.generate import generate_sites  # noqa: E402
from commune_collector.judge import Judge, MemoryEvidence, SiteRecord, load_criteria  # noqa: E402
from commune_collector.web.install import install  # noqa: E402
from commune_collector.web.source import JudgeSource  # noqa: E402
from testsupport.access import grant  # noqa: E402
from testsupport.synth import RTT_AVG, fast_bucket  # noqa: E402

H = float(BUCKET_SECONDS)
HOURS = 14  # enough coverage (>= 50% of 24 h) for the 24 h criteria to be judged
ICMP = {RTT_AVG: (0.025, 0.005), "icmp_jitter_seconds": (0.003, 0.001), "icmp_loss_ratio": (0.0, 0.0)}
LOSSY = {**ICMP, "icmp_loss_ratio": (0.05, 0.0)}
UPS = {"power_on_battery": (0.0, 0.0), "power_battery_runtime_seconds": (2400.0, 0.0)}
CHECKS = [
    ("link/fiber/icmp/provincial-dc", "icmp", {"link": "fiber", "role": "primary", "target": "provincial-dc"}),
    ("link/lte/icmp/provincial-dc", "icmp", {"link": "lte", "role": "backup", "target": "provincial-dc"}),
    ("power/ups", "ups_nut", {"ups": "ups", "source": "nut", "target": "ups"}),
    ("device/video-conference/icmp", "icmp", {"device": "video-conference", "role": "video_conference", "required": "true",
                                              "target": "video-conference"}),
]


def build_judge(n_sites: int) -> tuple[Judge, list[SiteRecord]]:
    sites = [SiteRecord(s.id, s.name, s.province, s.commune) for s in generate_sites(n_sites)]
    evidence = MemoryEvidence(sites=sites)
    now = bucket_of(time.time())
    rng = random.Random(3)
    for n, site in enumerate(sites):
        if n % 3 == 2:
            continue  # silent: unknown
        evidence.reported[site.id] = now
        for hour in range(HOURS):
            start = now - (hour + 1) * H
            for check, probe, labels in CHECKS:
                values = UPS if probe == "ups_nut" else LOSSY if n % 3 == 1 and "fiber" in check else ICMP
                evidence.add(fast_bucket(site.id, check, probe, labels, start, 120, 0, values, rng))
    clock = [now]
    judge = Judge(load_criteria(ROOT / "config" / "criteria.yaml"), evidence, clock=lambda: clock[0])
    judge.run_pass(now)
    clock[0] = now + H + 1
    judge.run_pass(clock[0])
    return judge, sites


def measure(client: TestClient, path: str, repeat: int) -> tuple[float, float, int]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(path, headers={"Accept-Encoding": "gzip"})
        times.append(time.perf_counter() - started)
        assert response.status_code == 200, (path, response.status_code)
    size = int(response.headers.get("content-length") or len(response.content))
    return statistics.median(times), max(times), size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sites", type=int, default=3321, help="communes in the generated inventory")
    parser.add_argument("--repeat", type=int, default=20, help="fetches per page")
    args = parser.parse_args(argv)

    print(f"judging {args.sites} sites over {HOURS} h of synthetic evidence ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    judge, sites = build_judge(args.sites)
    print(f"  ready in {time.perf_counter() - started:.1f}s", file=sys.stderr, flush=True)
    app = FastAPI()
    install(app)
    grant(app)  # a national operator, as the gate would set one
    app.state.verdict_source = JudgeSource(judge)
    client = TestClient(app)
    big = max({s.province for s in sites}, key=lambda p: sum(s.province == p for s in sites))
    silent_site = sites[2].id
    print(f"{'page':48} {'median':>9} {'worst':>9} {'gzip':>9}")
    for path in ("/", "/?lang=en", f"/p/{big}", f"/p/{big}?state=unknown", f"/s/{silent_site}",
                 f"/s/{sites[1].id}?lang=en"):
        median, worst, size = measure(client, path, args.repeat)
        print(f"{path:48} {median * 1000:7.1f}ms {worst * 1000:7.1f}ms {size / 1024:7.1f}KiB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
