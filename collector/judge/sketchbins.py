"""How the judge holds a key's sketches in memory: 1 % buckets near its thresholds, coarser elsewhere.

The stored sketch (``commune_collector.evidence``) has 1 % buckets from a
microsecond to 55 hours: about 1,300 of them. The judge keeps one histogram
per check and hour of its window (25 for a 24 h p95 of 10,000 links), so
holding every bucket would take 650 MiB for one criterion. What a criterion
must decide sharply is the side of its threshold, so the matrix keeps the
sketch's own 1 % buckets within a factor ``BAND`` of every threshold the key
is judged against, and groups of ``COARSE`` buckets (x 1.196, like the old
histogram) elsewhere: about 330 bins. Every bin is a whole run of sketch
buckets, so its edges are exact and a quantile's bounds stay proofs: a value
far from the threshold is known less precisely, never wrongly.

A quantile is read the way numpy's default (linear) method computes it from
the raw values: between the order statistics ``floor((n-1)q)`` and the next.
The bounds are the lower edge of the first's bin and the upper edge of the
second's (then clamped to the window's exact min and max); the shown value
interpolates the bins' representatives, so when both order statistics lie
within the band it is within ``SKETCH_ALPHA`` (1 %) of numpy's exact quantile.
"""

from __future__ import annotations

import math

import numpy as np

from commune_collector.evidence import HIST_BASE, HIST_FLOOR, HIST_ZERO, SKETCH_GAMMA, sketch_index

BAND = 8.0  # 1 % buckets within a factor 8 of a threshold (150 ms: 19 ms to 1.2 s)
COARSE = 9  # elsewhere, 9 sketch buckets a bin: x 1.196, the shown value within 10 %
SKETCH_MIN = sketch_index(HIST_FLOOR * SKETCH_GAMMA)  # the first bucket above the zero bucket
SKETCH_MAX = sketch_index(2e5)  # about 55 hours (UPS runtime, ages); anything above lands here
LEGACY_FACTOR = math.sqrt(HIST_BASE)  # a legacy value placed at its bucket's midpoint is off by at most this
_LOG_GAMMA = math.log(SKETCH_GAMMA)


class SketchBins:
    """The bin layout of one value key: sketch bucket -> bin, and each bin's edges and value."""

    def __init__(self, thresholds: tuple[float, ...] = (), band: float = BAND, coarse: int = COARSE):
        n = SKETCH_MAX - SKETCH_MIN + 1
        fine = np.zeros(n, dtype=bool)
        for t in thresholds:
            if t > 0 and math.isfinite(t):
                lo = max(sketch_index(t / band), SKETCH_MIN) - SKETCH_MIN
                hi = min(sketch_index(t * band), SKETCH_MAX) - SKETCH_MIN
                fine[lo:hi + 1] = True
        self.bin_of = np.empty(n, dtype=np.int64)  # sketch bucket - SKETCH_MIN -> bin (bin 0: zero and below)
        firsts, lasts = [], []
        i = 0
        while i < n:
            j = i + 1
            if not fine[i]:
                while j < n and not fine[j] and j - i < coarse:
                    j += 1
            self.bin_of[i:j] = len(firsts) + 1
            firsts.append(i + SKETCH_MIN)
            lasts.append(j - 1 + SKETCH_MIN)
            i = j
        first, last = np.array(firsts, dtype=np.float64), np.array(lasts, dtype=np.float64)
        lower, upper = SKETCH_GAMMA ** (first - 1), SKETCH_GAMMA ** last
        value = np.where(first == last, 2 * upper / (SKETCH_GAMMA + 1), np.sqrt(lower * upper))
        upper[-1] = np.inf  # values above SKETCH_MAX were clamped into the last bin
        self.lower = np.r_[-np.inf, lower]  # bin 0 holds zeros (and anything at or below HIST_FLOOR)
        self.upper = np.r_[HIST_FLOOR, upper]
        self.value = np.r_[0.0, value]
        self.size = len(self.value)

    def of_sketch(self, index: np.ndarray) -> np.ndarray:
        """Bins of sketch bucket indices (HIST_ZERO -> bin 0)."""
        inside = np.clip(index, SKETCH_MIN, SKETCH_MAX) - SKETCH_MIN
        return np.where(index == HIST_ZERO, 0, self.bin_of[inside])

    def of_legacy(self, index: np.ndarray) -> np.ndarray:
        """Bins of legacy histogram buckets: each placed at its geometric midpoint (off by <= LEGACY_FACTOR)."""
        mid = np.ceil((index + 0.5) * math.log(HIST_BASE) / _LOG_GAMMA - 1e-9).astype(np.int64)
        return np.where(index == HIST_ZERO, 0, self.of_sketch(np.where(index == HIST_ZERO, SKETCH_MIN, mid)))

    def quantile(self, merged: np.ndarray, q: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per row of merged bin counts: (shown value, lower bound, upper bound); NaN for an empty row."""
        total = merged.sum(axis=1)
        cum = merged.cumsum(axis=1)
        rank = np.maximum(total - 1, 0) * q
        below = np.floor(rank)
        above = np.minimum(below + 1, np.maximum(total - 1, 0))
        b0 = (cum > below[:, None]).argmax(axis=1)
        b1 = (cum > above[:, None]).argmax(axis=1)
        v0, v1 = self.value[b0], self.value[b1]
        empty = total == 0
        value = np.where(empty, np.nan, v0 + (rank - below) * (v1 - v0))
        return value, np.where(empty, np.nan, self.lower[b0]), np.where(empty, np.nan, self.upper[b1])
