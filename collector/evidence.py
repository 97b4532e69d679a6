"""The evidence the judge reads: windowed summaries per site, check and time bucket.

Raw series belong in a TSDB (Prometheus via remote_write). The collector keeps
only what judging needs (docs/architecture.md, "Judge"): for each site, check and bucket (one hour
by default), the count of good and bad rounds and, per value, count, sum, min,
max and last, plus a mergeable relative-error sketch for latency values so a
p95 over 24 hours can be computed from 24 buckets without the raw samples.

The sketch is DDSketch's layout (Masson et al., VLDB 2019): bucket ``i`` counts
the values in ``(gamma^(i-1), gamma^i]`` with ``gamma = (1 + a) / (1 - a)`` and
``a = SKETCH_ALPHA`` (1 %), so any value read back from it is within 1 % of a
real sample, and two sketches merge by adding counts. Rows written before it
carry the old histogram (``x 2^(1/4)`` buckets, ~19 % wide): they still read,
as ``ValueStats.legacy``, and the judge widens its bounds for them.

Summaries merge: folding results in any order, or merging two summaries of the
same bucket, gives the same answer. That is what lets spooled evidence that
arrives hours late land in the bucket it belongs to.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from commune_common.wire import CheckResult, split_key

BUCKET_SECONDS = 3600
HIST_BASE = 2 ** 0.25  # the legacy histogram's buckets (~19% wide), in rows written before the sketch
HIST_FLOOR = 1e-6  # seconds; anything at or below lands in bucket HIST_ZERO
HIST_ZERO = -10_000
SKETCH_ALPHA = 0.01  # relative accuracy of the sketch: a value read back is within 1 % of a sample
SKETCH_GAMMA = (1 + SKETCH_ALPHA) / (1 - SKETCH_ALPHA)
_LOG_GAMMA = math.log(SKETCH_GAMMA)
_SUMMARY_LABELS = {"stat"}  # values with other labels (per interface, per sensor) stay in the TSDB


@functools.lru_cache(maxsize=65536)  # called for every value of every round folded
def summarised(key: str) -> bool:
    """Whether a value key is kept in summaries (per-interface detail is not)."""
    _, labels = split_key(key)
    return set(labels) <= _SUMMARY_LABELS


@functools.lru_cache(maxsize=65536)
def histogrammed(key: str) -> bool:
    """Latency-like values get a histogram for quantiles; min/max/stddev of a round do not."""
    name, labels = split_key(key)
    return name.endswith("_seconds") and labels.get("stat", "avg") == "avg" and "expiry" not in name


def hist_index(value: float) -> int:
    """The legacy histogram's bucket of a value (kept to read and test rows written before the sketch)."""
    if value <= HIST_FLOOR:
        return HIST_ZERO
    return math.floor(math.log(value) / math.log(HIST_BASE))


def hist_value(index: int) -> float:
    """A representative value of a legacy bucket: its geometric midpoint."""
    if index == HIST_ZERO:
        return 0.0
    return HIST_BASE ** (index + 0.5)


def sketch_index(value: float) -> int:
    """The sketch bucket holding ``value``: ``(gamma^(i-1), gamma^i]``; HIST_ZERO at or below HIST_FLOOR."""
    if value <= HIST_FLOOR:
        return HIST_ZERO
    return math.ceil(math.log(value) / _LOG_GAMMA)


def sketch_value(index: int) -> float:
    """The value a sketch bucket stands for, within SKETCH_ALPHA of anything in it."""
    if index == HIST_ZERO:
        return 0.0
    return 2 * SKETCH_GAMMA ** index / (SKETCH_GAMMA + 1)


def encode_sketch(counts: dict[int, int]) -> list[int]:
    """``{index: count}`` as a flat list ``[i0, c0, d1, c1, ...]`` of index gaps and counts.

    A JSON list, never an object, so a stored sketch is told from a legacy
    histogram (an object) by its type; the gaps are small numbers, so an hour
    of RTTs takes about 5 bytes per occupied bucket.
    """
    out: list[int] = []
    previous = 0
    for position, index in enumerate(sorted(counts)):
        out += [index if position == 0 else index - previous, counts[index]]
        previous = index
    return out


def decode_sketch(flat: list[int]) -> dict[int, int]:
    out: dict[int, int] = {}
    index = 0
    for position in range(0, len(flat), 2):
        index = flat[position] if position == 0 else index + flat[position]
        out[index] = flat[position + 1]
    return out


@dataclass
class ValueStats:
    count: int = 0
    sum: float = 0.0
    min: float = math.inf
    max: float = -math.inf
    last: float = math.nan
    last_ts: float = -math.inf
    hist: dict[int, int] | None = None  # the sketch: sketch_index -> count
    legacy: dict[int, int] | None = None  # a legacy histogram read from an old row: hist_index -> count

    def add(self, value: float, ts: float, with_hist: bool) -> None:
        self.count += 1
        self.sum += value
        self.min = min(self.min, value)
        self.max = max(self.max, value)
        if ts >= self.last_ts:
            self.last, self.last_ts = value, ts
        if with_hist:
            self.hist = self.hist or {}
            i = sketch_index(value)
            self.hist[i] = self.hist.get(i, 0) + 1

    def merge(self, other: ValueStats) -> None:
        self.count += other.count
        self.sum += other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        if other.last_ts >= self.last_ts:
            self.last, self.last_ts = other.last, other.last_ts
        if other.hist:
            self.hist = self.hist or {}
            for i, n in other.hist.items():
                self.hist[i] = self.hist.get(i, 0) + n
        if other.legacy:
            self.legacy = self.legacy or {}
            for i, n in other.legacy.items():
                self.legacy[i] = self.legacy.get(i, 0) + n

    @property
    def mean(self) -> float:
        return self.sum / self.count if self.count else math.nan

    def to_json(self) -> list:
        """``[count, sum, min, max, last, last_ts, sketch]`` (+ the legacy histogram when the row had one)."""
        out = [self.count, self.sum, self.min, self.max, self.last, self.last_ts,
               encode_sketch(self.hist) if self.hist else None]
        if self.legacy:
            out.append({str(k): v for k, v in self.legacy.items()})
        return out

    @classmethod
    def from_json(cls, data: list) -> ValueStats:
        """Both formats: a sketch (list) at position 6, or a legacy histogram (object) there or at 7."""
        count, total, lo, hi, last, last_ts = data[:6]
        out = cls(count, total, lo, hi, last, last_ts)
        for part in data[6:8]:
            if isinstance(part, list) and part:
                out.hist = decode_sketch(part)
            elif isinstance(part, dict) and part:
                out.legacy = {int(k): v for k, v in part.items()}
        return out


@dataclass
class CheckSummary:
    """Everything known about one check of one site during one bucket."""

    site: str
    check: str
    probe: str
    bucket_start: float
    labels: dict[str, str] = field(default_factory=dict)
    rounds_ok: int = 0
    rounds_fail: int = 0
    first_ts: float = math.inf
    last_ts: float = -math.inf
    last_reason: str = ""
    values: dict[str, ValueStats] = field(default_factory=dict)

    @property
    def rounds(self) -> int:
        return self.rounds_ok + self.rounds_fail

    def fold(self, result: CheckResult, ts: float | None = None) -> None:
        """Add one round (``ts`` is its corrected time; defaults to the agent's)."""
        ts = result.ts if ts is None else ts
        if result.ok:
            self.rounds_ok += 1
        else:
            self.rounds_fail += 1
        if ts >= self.last_ts:
            self.last_ts = ts
            self.last_reason = result.reason
            self.labels = dict(result.labels)
        self.first_ts = min(self.first_ts, ts)
        for key, value in result.values.items():
            if summarised(key) and math.isfinite(value):
                self.values.setdefault(key, ValueStats()).add(value, ts, histogrammed(key))

    def merge(self, other: CheckSummary) -> None:
        self.rounds_ok += other.rounds_ok
        self.rounds_fail += other.rounds_fail
        self.first_ts = min(self.first_ts, other.first_ts)
        if other.last_ts >= self.last_ts:
            self.last_ts, self.last_reason, self.labels = other.last_ts, other.last_reason, dict(other.labels)
        for key, stats in other.values.items():
            self.values.setdefault(key, ValueStats()).merge(stats)

    def values_json(self) -> dict[str, list]:
        return {k: v.to_json() for k, v in self.values.items()}


def bucket_of(ts: float, bucket_seconds: int = BUCKET_SECONDS) -> float:
    return float(math.floor(ts / bucket_seconds) * bucket_seconds)


def quantile(stats: Iterable[ValueStats], q: float) -> float:
    """The q-quantile (0-1) over merged sketches, as numpy's default (linear) method would place it.

    Reference implementation, one check at a time, for tests; the judge
    computes the same vectorised (``commune_collector.judge.matrix``). NaN
    with no data.
    """
    merged: dict[int, int] = {}
    for s in stats:
        for i, n in (s.hist or {}).items():
            merged[i] = merged.get(i, 0) + n
    total = sum(merged.values())
    if not total:
        return math.nan
    rank = (total - 1) * q
    below, frac = math.floor(rank), rank - math.floor(rank)
    ordered = sorted(merged)
    cum = list(itertools.accumulate(merged[i] for i in ordered))
    lo = sketch_value(ordered[bisect.bisect_right(cum, below)])
    hi = sketch_value(ordered[bisect.bisect_right(cum, min(below + 1, total - 1))])
    return lo + frac * (hi - lo)


def fold_results(site: str, results: Iterable[tuple[CheckResult, float]],
                 bucket_seconds: int = BUCKET_SECONDS) -> dict[tuple[str, float], CheckSummary]:
    """Group (result, corrected ts) pairs into per-(check, bucket) summaries."""
    out: dict[tuple[str, float], CheckSummary] = {}
    for result, ts in results:
        key = (result.check, bucket_of(ts, bucket_seconds))
        summary = out.get(key)
        if summary is None:
            summary = out[key] = CheckSummary(site, result.check, result.probe, key[1])
        summary.fold(result, ts)
    return out
