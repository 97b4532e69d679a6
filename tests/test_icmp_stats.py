"""The ICMP round's statistics against an exact reference (``statistics`` over Fractions).

``rtt_stats`` does its sums in C (fsum, dist, map) because 500 rounds ending together wait
for it; these cases hold it to the textbook definitions: population stddev (ping's mdev),
jitter as the mean absolute difference of consecutive received RTTs, lost echoes skipped.
"""

from __future__ import annotations

import math
import random
import statistics

import pytest

from commune_agent.probes.icmp import _SAMPLES, rtt_samples, rtt_stats


def reference(rtts: list[float | None]) -> dict[str, float]:
    got = [r for r in rtts if r is not None]
    out = {"sent": float(len(rtts)), "received": float(len(got)), "loss": 1 - len(got) / len(rtts)}
    if got:
        out |= {"min": min(got), "avg": statistics.fmean(got), "max": max(got), "stddev": statistics.pstdev(got)}
    if len(got) >= 2:
        out["jitter"] = statistics.fmean([abs(b - a) for a, b in zip(got, got[1:], strict=False)])
    return out


_rng = random.Random(5)
CASES = {
    "all answered": [0.00012, 0.00011, 0.00013, 0.000125, 0.00009],
    "losses": [None, 0.1, None, 0.3, 0.2],
    "one reply": [None, None, 0.05],
    "none": [None] * 5,
    "constant": [0.08] * 5,
    # a small spread on a large RTT: where sum-of-squares shortcuts lose every digit
    "80 ms +/- 1 us": [0.08 + _rng.uniform(-1e-6, 1e-6) for _ in range(100)],
}


@pytest.mark.parametrize("rtts", CASES.values(), ids=CASES.keys())
def test_rtt_stats_match_the_exact_reference(rtts: list[float | None]) -> None:
    got, want = rtt_stats(rtts), reference(rtts)
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert math.isclose(got[key], value, rel_tol=1e-12, abs_tol=1e-18), (key, got[key], value)


@pytest.mark.parametrize("rtts", CASES.values(), ids=CASES.keys())
def test_samples_pair_each_stat_with_its_metric(rtts: list[float | None]) -> None:
    """rtt_samples pairs by position: rtt_stats' keys must be a prefix of the _SAMPLES table."""
    stats = rtt_stats(rtts)
    table = {(name, labels): key for key, name, labels in _SAMPLES}
    samples = rtt_samples(stats)
    assert len(samples) == len(stats)
    assert {table[(s.name, s.labels)]: s.value for s in samples} == stats
