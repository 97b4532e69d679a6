#!/usr/bin/env python3
"""How late the link emulator sends each packet, at 400 departures a second.

The emulator (testsupport/linkemu) stands in for netem, which this kernel
lacks: every test of an impaired link trusts it to send a packet when its
delay says. This measures that trust: 200 echoes a second each way through a
10 ms (+-2 ms jitter) link between two namespaces it makes, and the
emulator's own record of how late each departure left against its schedule.
Goal: p99 under 1 ms (a tenth of the smallest delay the tests emulate).
Depends on the machine's load, so it is measured here, not asserted in a test.

    .venv/bin/python benchmarks/linkemu_lateness.py [--repeat 3]

Needs root (network namespaces). Traffic stays inside the namespaces it makes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from testsupport.linkemu import impaired_link, netns  # noqa: E402
from testsupport.linkemu.ping import ping  # noqa: E402

COUNT, INTERVAL_S = 600, 0.005


def one_run(seed: int) -> dict:
    with impaired_link(delay_ms=10, jitter_ms=2, seed=seed, ipv6=False) as link:
        link.stats(reset=True)
        received = ping(link, COUNT, INTERVAL_S).received
        lateness = link.stats()["lateness"]
    return {"received": received, **lateness}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs (default 3)")
    args = parser.parse_args()
    netns.require_root_netns("ping")
    met = True
    for run in range(args.repeat):
        r = one_run(seed=5 + run)
        met &= r["p99_us"] < 1000
        print(f"run {run + 1}/{args.repeat}: {r['received']}/{COUNT} echoes back, {r['count']} departures; "
              f"lateness p50 {r['p50_us']:.0f} us, p99 {r['p99_us']:.0f} us, mean {r['mean_us']:.0f} us", flush=True)
    print(f"goal (p99 lateness < 1000 us in every run): {'MET' if met else 'NOT MET'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
