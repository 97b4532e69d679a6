"""The judge's working copy of the evidence: a ring of buckets per check, in numpy arrays.

Why arrays: a pass judges 10,000 sites, each with a handful of checks the
criteria read, over windows of up to a day of hourly buckets. Held as Python
objects that is millions of small dicts (gigabytes, seconds per pass); held as
one ``checks x buckets`` array per field it is a few hundred megabytes and
every windowed sum, maximum or quantile is one vectorised operation over all
checks at once.

Only what criteria read is kept: the checks some criterion (or the
present-tense facts) selects, and for each value key only the checks whose
criteria name it, over that key's own longest window (a 1 h jitter criterion
keeps 3 buckets, not 26). A bucket is *replaced* when the store hands it over
again (the store's summaries are already merged), so late evidence simply
rewrites its old slot and the next pass re-judges it.
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple, Protocol

import msgspec
import numpy as np

from commune_collector.judge.packs import PackBatch, PackedValues
from commune_collector.judge.quiet import QuietTime
from commune_collector.judge.sketchbins import LEGACY_FACTOR, SketchBins
from commune_collector.judge.stored_values import (
    NUMBERS,
    TAIL,
    KeyValue,
    flat_sketch_cells,
    legacy_cells,
    sketch_cells,
    values_decoder,
)

_GROW = 1024
_QUANTILE_ROWS = 2048  # rows merged at a time: bounds the gathered (rows, slots, bins) block to tens of MiB
_decode_labels = msgspec.json.Decoder(dict[str, str]).decode
Wants = Callable[[str, str, dict[str, str]], bool]  # (probe, check, labels) -> this check needs it


class BucketRow(NamedTuple):
    """One stored summary as the judge reads it, in the column order of the store's query.

    ``labels`` may be the stored JSON text (decoded only for a check the
    matrix has not seen with that text) and ``values`` the ``ValueStats.to_json``
    lists or their JSON text (decoded only when the bucket changed and the
    check keeps some value key).
    """

    bucket_start: float
    site: str
    check: str
    probe: str
    labels: dict[str, str] | str
    rounds_ok: int
    rounds_fail: int
    first_ts: float
    last_ts: float
    last_reason: str
    values: dict[str, list] | str | bytes | None


@dataclass(frozen=True, slots=True)
class KeyedBatch:
    """Summaries whose check is a number in the source's key table (``keys[n]`` = site, check, probe and
    labels): a cold pass reads millions of rows, and four strings a row cost more than their numbers."""

    keys: Sequence[tuple[str, str, str, str]]  # append-only; the matrix caches its rows by number
    rows: list[tuple]  # (key number, bucket_start, rounds_ok, rounds_fail, first_ts, last_ts, failed, values)

    def __len__(self) -> int:
        return len(self.rows)


@dataclass(frozen=True)
class KeySpec:
    """Which checks keep a value key, over how long, and which of them keep its histogram."""

    window: float
    wants: Wants
    hist_wants: Wants | None = None
    thresholds: tuple[float, ...] = ()  # the quantile criteria's thresholds: where the sketch stays at 1 %


class _Columns:
    """Growable arrays sharing one row count: ``name -> (rows, *shape)``."""

    def __init__(self) -> None:
        self.capacity = 0
        self.arrays: dict[str, np.ndarray] = {}
        self.fill: dict[str, float] = {}

    def add(self, name: str, dtype: type, fill: float, shape: tuple[int, ...] = ()) -> None:
        self.fill[name] = fill
        self.arrays[name] = np.full((self.capacity, *shape), fill, dtype=dtype)

    def grow(self, needed: int) -> None:
        if needed <= self.capacity:
            return
        new = max(needed, self.capacity + self.capacity // 4, _GROW)  # +25 %: 10,000 sites waste little
        for name, old in self.arrays.items():
            arr = np.full((new, *old.shape[1:]), self.fill[name], dtype=old.dtype)
            arr[: self.capacity] = old
            self.arrays[name] = arr
        self.capacity = new

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays.values())


class _KeyColumns:
    """One value key, for the rows that need it (a dense sub-index), over the key's own ring."""

    PARTS = (("cnt", np.int32, 0), ("sum", np.float64, 0.0), ("min", np.float64, np.inf),
             ("max", np.float64, -np.inf), ("last", np.float64, np.nan), ("last_ts", np.float64, -np.inf))

    def __init__(self, slots: int, with_hist: bool, thresholds: tuple[float, ...] = ()):
        self.slots = slots
        self.index = np.full(0, -1, dtype=np.int64)
        self.used = 0
        self.ring = _Columns()
        self.ring.add("bucket", np.float64, -np.inf, (slots,))
        for name, dtype, fill in self.PARTS:
            self.ring.add(name, dtype, fill, (slots,))
        self.newest = _Columns()  # the newest value ever seen, kept past the ring (power state of a silent site)
        self.newest.add("value", np.float64, np.nan)
        self.newest.add("ts", np.float64, -np.inf)
        self.with_hist = with_hist
        self.hist_index = np.full(0, -1, dtype=np.int64)  # krow -> histogram row
        self.hist_used = 0
        self.hist = _Columns()
        self.bins = SketchBins(thresholds)
        if with_hist:
            self.hist.add("h", np.uint16, 0, (slots, self.bins.size))
            self.hist.add("legacy", np.bool_, False, (slots,))  # the cell holds a legacy (x 1.19) histogram

    def krow(self, row: int) -> int:
        if row >= len(self.index):
            self.index = _grown(self.index, row + 1)
        if self.index[row] < 0:
            self.index[row] = self.used
            self.used += 1
            self.ring.grow(self.used)
            self.newest.grow(self.used)
        return int(self.index[row])

    def hrow(self, krow: int) -> int:
        if krow >= len(self.hist_index):
            self.hist_index = _grown(self.hist_index, krow + 1)
        if self.hist_index[krow] < 0:
            self.hist_index[krow] = self.hist_used
            self.hist_used += 1
            self.hist.grow(self.hist_used)
        return int(self.hist_index[krow])

    def krows(self, rows: np.ndarray) -> np.ndarray:
        """``krow`` of many rows at once (a cold pass assigns hundreds of thousands)."""
        self.index, self.used = _assign(self.index, rows, self.used)
        self.ring.grow(self.used)
        self.newest.grow(self.used)
        return self.index[rows]

    def hrows(self, krows: np.ndarray) -> np.ndarray:
        """``hrow`` of many sub-index rows at once."""
        self.hist_index, self.hist_used = _assign(self.hist_index, krows, self.hist_used)
        self.hist.grow(self.hist_used)
        return self.hist_index[krows]

    def lookup(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(positions in ``rows`` that have the key, their sub-index rows)."""
        krows = np.full(len(rows), -1, dtype=np.int64)
        inside = rows < len(self.index)
        krows[inside] = self.index[rows[inside]]
        have = np.flatnonzero(krows >= 0)
        return have, krows[have]

    def nbytes(self) -> int:
        return self.ring.nbytes() + self.newest.nbytes() + self.hist.nbytes()


def _assign(index: np.ndarray, wanted: np.ndarray, used: int) -> tuple[np.ndarray, int]:
    """Give the ``wanted`` entries of ``index`` that have none the next numbers, in first-seen order."""
    if len(wanted) and int(wanted.max()) >= len(index):
        index = _grown(index, int(wanted.max()) + 1)
    new = wanted[index[wanted] < 0]
    if len(new):
        unique, first = np.unique(new, return_index=True)
        unique = unique[np.argsort(first)]
        index[unique] = np.arange(used, used + len(unique))
        used += len(unique)
    return index, used


def _padded(index: np.ndarray, n: int) -> np.ndarray:
    """The first ``n`` entries of a lazily grown index (-1 past its end)."""
    out = np.full(n, -1, dtype=np.int64)
    out[:min(n, len(index))] = index[:n]
    return out


def _grown(index: np.ndarray, needed: int) -> np.ndarray:
    out = np.full(max(needed, len(index) + len(index) // 4, _GROW), -1, dtype=np.int64)
    out[: len(index)] = index
    return out


class EvidenceMatrix:
    """Per (site, check) rings of hourly evidence; see the module docstring."""

    def __init__(self, bucket_s: float, max_window_s: float, keys: dict[str, KeySpec] | None = None):
        self.bucket_s = float(bucket_s)
        self.max_window_s = float(max_window_s)
        self.slots = self._slots_for(max_window_s)
        self.specs = dict(keys or {})
        self.keys: dict[str, _KeyColumns] = {
            k: _KeyColumns(self._slots_for(spec.window), spec.hist_wants is not None, spec.thresholds)
            for k, spec in self.specs.items()}
        self.index: dict[tuple[str, str], int] = {}
        self.site: list[str] = []
        self.check: list[str] = []
        self.probe: list[str] = []
        self.labels: list[dict[str, str]] = []
        self.raw_labels: list[dict[str, str] | str] = []  # as given, to see a change without decoding
        self.row_keys: list[tuple[tuple[str, bool], ...]] = []  # per row: (key, with histogram)
        # a fleet repeats a few check configurations: each row points at its (probe, check, labels) one,
        # so what depends only on the configuration (keys, criteria, facts) is decided once per configuration
        self.config: list[int] = []
        self.configs: list[tuple[str, str, dict[str, str]]] = []
        self._config_ids: dict[tuple[str, str, object], int] = {}
        self._config_keys: list[tuple[tuple[str, bool], ...]] = []
        self._label_texts: dict[str, dict[str, str]] = {}
        self.cols = _Columns()
        self.cols.add("bucket", np.float64, -np.inf, (self.slots,))
        self.cols.add("ok", np.int32, 0, (self.slots,))
        self.cols.add("fail", np.int32, 0, (self.slots,))
        self.cols.add("first_ts", np.float64, np.nan, (self.slots,))
        self.cols.add("last_ts", np.float64, np.nan, (self.slots,))
        self.cols.add("last_failed", np.bool_, False, (self.slots,))
        self.latest = _Columns()  # the newest round ever seen per row, past the ring
        self.latest.add("ts", np.float64, -np.inf)
        self.latest.add("failed", np.bool_, False)
        self.generation = 0  # bumped when rows are added or relabelled, so selections can be cached
        self._key_table: Sequence[tuple[str, str, str, str]] | None = None  # a KeyedBatch's keys ...
        self._key_rows = np.full(0, -1, dtype=np.int64)  # ... and the row of each of them (-1: not yet)
        self._key_wants = self._key_hists = np.zeros((0, 0), dtype=bool)  # _keys_by_config(), for this many:
        self._key_table_for = -1
        self._decode_values, self._value_fields = values_decoder(list(self.specs))

    def _slots_for(self, window: float) -> int:
        return int(math.ceil(max(window, self.bucket_s) / self.bucket_s)) + 2

    @property
    def rows(self) -> int:
        return len(self.site)

    @property
    def value_keys(self) -> list[str]:
        return list(self.keys)

    def nbytes(self) -> int:
        return self.cols.nbytes() + self.latest.nbytes() + sum(k.nbytes() for k in self.keys.values())

    # -- rows ------------------------------------------------------------------

    def row_for(self, site: str, check: str, probe: str, labels: dict[str, str] | str) -> int:
        """The row of a check, created (or relabelled) as needed; ``labels`` as a dict or its JSON text."""
        key = (site, check)
        row = self.index.get(key)
        if row is None:
            row = len(self.site)
            self.cols.grow(row + 1)
            self.latest.grow(row + 1)
            self.index[key] = row
            config = self._config_of(probe, check, labels)
            self.site.append(site)
            self.check.append(check)
            self.probe.append(probe)
            self.labels.append(self.configs[config][2])
            self.raw_labels.append(labels)
            self.config.append(config)
            self.row_keys.append(self._config_keys[config])
            self.generation += 1
        elif labels != self.raw_labels[row] or probe != self.probe[row]:
            config = self._config_of(probe, check, labels)
            self.raw_labels[row] = labels
            if config != self.config[row]:
                decoded = self.configs[config][2]
                changed = decoded != self.labels[row] or probe != self.probe[row]
                self.labels[row] = decoded
                self.probe[row] = probe
                self.config[row] = config
                self.row_keys[row] = self._config_keys[config]
                if changed:
                    self.generation += 1
        return row

    def add_rows(self, sites: Sequence[str], checks: Sequence[str], probes: Sequence[str],
                 labels: Sequence[dict[str, str] | str], grow: bool = True) -> None:
        """Append many new rows at once (a restored checkpoint: 70,000 of them at 10,000 sites);
        ``grow=False``: the caller sets the row arrays itself (the checkpoint's own)."""
        start = len(self.site)
        keys = list(zip(sites, checks, strict=True))
        if len(set(keys)) != len(keys) or any(k in self.index for k in keys):
            raise ValueError("a (site, check) given twice, or already in the matrix")
        configs = self._configs_of(probes, checks, labels)
        if grow:
            self.cols.grow(start + len(sites))
            self.latest.grow(start + len(sites))
        self.index.update(zip(keys, range(start, start + len(sites)), strict=True))
        self.site += sites
        self.check += checks
        self.probe += probes
        self.raw_labels += labels
        self.config += configs
        self.labels += [self.configs[c][2] for c in configs]
        self.row_keys += [self._config_keys[c] for c in configs]
        self.generation += len(sites)  # one per row, as row_for counts (selections then update incrementally)

    def _configs_of(self, probes: Sequence[str], checks: Sequence[str], labels: Sequence[dict[str, str] | str]
                    ) -> list[int]:
        """``_config_of`` of many rows: each distinct configuration once (a fleet has a few dozen)."""
        if not all(type(raw) is str for raw in labels):
            return [self._config_of(p, c, raw) for p, c, raw in zip(probes, checks, labels, strict=True)]
        triples = list(zip(probes, checks, labels, strict=True))
        distinct = {t: self._config_of(*t) for t in dict.fromkeys(triples)}
        return list(map(distinct.__getitem__, triples))

    def _config_of(self, probe: str, check: str, labels: dict[str, str] | str) -> int:
        """The configuration id of (probe, check, labels), made (and its keys decided) on first sight."""
        if isinstance(labels, str):
            decoded = self._label_texts.get(labels)
            if decoded is None:
                decoded = self._label_texts[labels] = _labels_of(labels)
            key: tuple[str, str, object] = (probe, check, labels)
        else:
            decoded = labels
            key = (probe, check, tuple(sorted(labels.items())))
        config = self._config_ids.get(key)
        if config is None:
            config = self._config_ids[key] = len(self.configs)
            self.configs.append((probe, check, decoded))
            self._config_keys.append(self.keys_of(probe, check, decoded))
        return config

    def empty_like(self) -> EvidenceMatrix:
        """An empty matrix of this one's layout (same buckets, ring and keys)."""
        return EvidenceMatrix(self.bucket_s, self.max_window_s, self.specs)

    def absorb(self, other: EvidenceMatrix) -> None:
        """Take the rows of ``other`` (same layout): a helper's part of a cold read.

        Its checks are normally new here and are appended; one already here
        (a first pass that failed half-way and is read again) has its row
        replaced. Arrays are copied whole-row: the base columns and newest
        rounds by row, each value key's ring and newest value by its
        sub-index, and the histograms by theirs.
        """
        n = other.rows
        keys = list(zip(other.site, other.check, strict=True))
        held = list(map(self.index.get, keys))
        new = [i for i, row in enumerate(held) if row is None]
        for i, row in enumerate(held):
            if row is not None:
                self.row_for(other.site[i], other.check[i], other.probe[i], other.raw_labels[i])
        if new:
            self.add_rows([other.site[i] for i in new], [other.check[i] for i in new],
                          [other.probe[i] for i in new], [other.raw_labels[i] for i in new])
        mine = np.fromiter(map(self.index.__getitem__, keys), dtype=np.int64, count=n)
        for ours, theirs in ((self.cols, other.cols), (self.latest, other.latest)):
            for name, arr in ours.arrays.items():
                arr[mine] = theirs.arrays[name][:n]
        for key, store in self.keys.items():
            part = other.keys[key]
            index = _padded(part.index, n)
            have = np.flatnonzero(index >= 0)
            if not len(have):
                continue
            their_krows = index[have]
            krows = store.krows(mine[have])
            for ours, theirs in ((store.ring, part.ring), (store.newest, part.newest)):
                for name, arr in ours.arrays.items():
                    arr[krows] = theirs.arrays[name][their_krows]
            if store.with_hist:
                their_hrows = _padded(part.hist_index, part.used)[their_krows]
                with_hist = np.flatnonzero(their_hrows >= 0)
                if len(with_hist):
                    hrows = store.hrows(krows[with_hist])
                    for name, arr in store.hist.arrays.items():
                        arr[hrows] = part.hist.arrays[name][their_hrows[with_hist]]

    def bind_keys(self, keys: Sequence[tuple[str, str, str, str]], first: int) -> None:
        """``keys[first + row]`` is this matrix's row ``row`` (a source resumed from ``kept_checks``)."""
        self._key_table = keys
        self._key_rows = np.r_[np.full(first, -1, dtype=np.int64), np.arange(self.rows, dtype=np.int64)]

    def kept_checks(self) -> list[tuple[str, str, str, dict[str, str] | str, bool]]:
        """Per row: site, check, probe, labels as given, and whether it keeps some value (what a source
        resuming from a checkpoint reads again)."""
        return list(zip(self.site, self.check, self.probe, self.raw_labels, map(bool, self.row_keys), strict=True))

    def rows_by_config(self, start: int = 0) -> dict[int, np.ndarray]:
        """Rows from ``start`` on, grouped by their configuration id."""
        config = np.asarray(self.config[start:], dtype=np.int64)
        if not len(config):
            return {}
        order = np.argsort(config, kind="stable")
        ids, first = np.unique(config[order], return_index=True)
        return {int(c): start + part for c, part in zip(ids.tolist(), np.split(order, first[1:]), strict=True)}

    def keys_of(self, probe: str, check: str, labels: dict[str, str]) -> tuple[tuple[str, bool], ...]:
        """The value keys (and whether with a histogram) a check of this kind keeps."""
        out = []
        for key, spec in self.specs.items():
            if spec.wants(probe, check, labels):
                out.append((key, spec.hist_wants is not None and spec.hist_wants(probe, check, labels)))
        return tuple(out)

    # -- loading ---------------------------------------------------------------

    def horizon(self, now: float) -> float:
        """The oldest bucket start the ring can hold at ``now``."""
        return self.bucket_of(now) - (self.slots - 1) * self.bucket_s

    def bucket_of(self, ts: float) -> float:
        return math.floor(ts / self.bucket_s) * self.bucket_s

    def load(self, batches: Iterable[Sequence[BucketRow | tuple] | KeyedBatch | PackBatch], now: float) -> int:
        """Write batches of summaries into their slots (replacing what was there); return how many changed.

        Vectorised per batch: the only per-row Python is finding the row and,
        for a bucket that changed and whose check keeps values, decoding them.
        """
        horizon = self.horizon(now)
        return sum(self._load_keyed(batch, horizon) if isinstance(batch, KeyedBatch)
                   else self._load_pack(batch, horizon) if isinstance(batch, PackBatch)
                   else self._load_batch(batch, horizon) for batch in batches if len(batch))

    def _load_batch(self, batch: Sequence[BucketRow | tuple], horizon: float) -> int:
        (buckets_t, sites, checks, probes, labels, oks, fails, firsts, lasts, reasons, values) = zip(*batch,
                                                                                                   strict=True)
        buckets = np.array(buckets_t, dtype=np.float64)
        raw = self.raw_labels
        rows = np.fromiter(map(self.index.get, zip(sites, checks, strict=True), itertools.repeat(-1)),
                           dtype=np.int64, count=len(batch))
        known = np.flatnonzero(rows >= 0).tolist()
        held = map(raw.__getitem__, rows[known].tolist())
        for i, same in zip(known, map(operator.eq, map(labels.__getitem__, known), held), strict=True):
            if not same:  # an existing check with other labels (rare)
                self.row_for(sites[i], checks[i], probes[i], labels[i])
        for i in np.flatnonzero(rows < 0).tolist():  # a check seen for the first time
            if buckets[i] >= horizon:
                rows[i] = self.row_for(sites[i], checks[i], probes[i], labels[i])
        return self._write(rows, buckets, oks, fails, firsts, lasts, reasons, values, horizon)

    def _load_keyed(self, batch: KeyedBatch, horizon: float) -> int:
        """A batch whose checks are numbers of the source's key table: rows found by array look-up."""
        numbers_t, buckets_t, oks, fails, firsts, lasts, failed, values = zip(*batch.rows, strict=True)
        buckets = np.array(buckets_t, dtype=np.float64)
        rows = self._rows_of_numbers(batch.keys, np.array(numbers_t, dtype=np.int64), buckets, horizon)
        return self._write(rows, buckets, oks, fails, firsts, lasts, failed, values, horizon)

    def _load_pack(self, batch: PackBatch, horizon: float) -> int:
        """An hour pack (judge/packs.py): one check's hour across sites, already arrays."""
        pack = batch.pack
        buckets = np.full(len(pack), pack.bucket, dtype=np.float64)
        rows = self._rows_of_numbers(batch.keys, batch.numbers, buckets, horizon)
        pick = self._write_rounds(rows, buckets, pack.ok, pack.fail, pack.first, pack.last, pack.failed, horizon)
        if len(pick) and len(self.keys):
            picked_rows = rows[pick]
            configs = np.fromiter(map(self.config.__getitem__, picked_rows.tolist()), dtype=np.int64,
                                  count=len(pick))
            wants, hists = self._keys_by_config()
            for k, key in enumerate(self.keys):
                packed = pack.values.get(key)
                want = wants[k][configs]
                if packed is None or not want.any():
                    continue  # the source read the rows instead when a kept key was missing
                at = packed.position[pick]
                found = np.flatnonzero(want & (at >= 0))
                if len(found):
                    self._write_key(self.keys[key], picked_rows[found], buckets[pick[found]],
                                    packed.numbers[at[found]], _PackHists(packed, at[found]),
                                    hists[k][configs[found]])
        return len(pick)

    def _rows_of_numbers(self, keys: Sequence[tuple[str, str, str, str]], numbers: np.ndarray,
                         buckets: np.ndarray, horizon: float) -> np.ndarray:
        """The rows of checks given as numbers of a source's key table (-1: none, or not read)."""
        if keys is not self._key_table or len(self._key_rows) < len(keys):
            if keys is not self._key_table:
                self._key_rows = np.full(0, -1, dtype=np.int64)
                self._key_table = keys
            self._key_rows = np.r_[self._key_rows, np.full(len(keys) - len(self._key_rows), -1, np.int64)]
        safe = np.maximum(numbers, 0)
        rows = np.where(numbers >= 0, self._key_rows[safe], -1)
        first = np.unique(numbers[(rows < 0) & (numbers >= 0) & (buckets >= horizon)]).tolist()  # first seen
        if first:
            seen = list(map(keys.__getitem__, first))
            held = map(self.index.get, [(site, check) for site, check, _, _ in seen])
            for n, key, row in zip(first, seen, held, strict=True):
                if row is None or key[3] != self.raw_labels[row] or key[2] != self.probe[row]:
                    row = self.row_for(*key)  # a new check, or one whose probe or labels changed
                self._key_rows[n] = row
            rows = np.where(numbers >= 0, self._key_rows[safe], -1)
        return rows

    def _write(self, rows: np.ndarray, buckets: np.ndarray, oks: Sequence[int], fails: Sequence[int],
               firsts: Sequence[float], lasts: Sequence[float], reasons: Sequence[object],
               values: Sequence[dict[str, list] | str | bytes | None], horizon: float) -> int:
        failed = np.fromiter(map(bool, reasons), dtype=bool, count=len(reasons))
        pick = self._write_rounds(rows, buckets, np.array(oks, dtype=np.int64), np.array(fails, dtype=np.int64),
                                  np.array(firsts, dtype=np.float64), np.array(lasts, dtype=np.float64), failed,
                                  horizon)
        if len(pick):
            self._load_values(pick, rows, buckets, values)
        return len(pick)

    def _write_rounds(self, rows: np.ndarray, buckets: np.ndarray, ok: np.ndarray, fail: np.ndarray,
                      first: np.ndarray, last: np.ndarray, failed: np.ndarray, horizon: float) -> np.ndarray:
        """Write the round counts and times of the buckets that are new or changed; return which."""
        if not (rows >= 0).any():
            return np.zeros(0, dtype=np.int64)
        slots = (buckets // self.bucket_s).astype(np.int64) % self.slots
        c = self.cols
        safe = np.maximum(rows, 0)
        held = c["bucket"][safe, slots]
        same = ((held == buckets) & (c["ok"][safe, slots] == ok) & (c["fail"][safe, slots] == fail)
                & (c["last_ts"][safe, slots] == last))
        write = (rows >= 0) & (buckets >= horizon) & (held <= buckets) & ~same
        write &= _newest_per_cell(rows * self.slots + slots, buckets, write)
        pick = np.flatnonzero(write)
        if not len(pick):
            return pick
        r, sl = rows[pick], slots[pick]
        c["bucket"][r, sl] = buckets[pick]
        c["ok"][r, sl] = ok[pick]
        c["fail"][r, sl] = fail[pick]
        c["first_ts"][r, sl] = first[pick]
        c["last_ts"][r, sl] = last[pick]
        c["last_failed"][r, sl] = failed[pick]
        _newest(self.latest["ts"], self.latest["failed"], r, last[pick], failed[pick])
        return pick

    def _load_values(self, pick: np.ndarray, rows: np.ndarray, buckets: np.ndarray,
                     values: Sequence[dict[str, list] | str | bytes | None]) -> None:
        """The kept value keys of the picked buckets: decoded together (one msgspec call a batch, only the
        kept keys built), then written one key at a time with vectorised operations."""
        picked_rows = rows[pick]
        configs = np.fromiter(map(self.config.__getitem__, picked_rows.tolist()), dtype=np.int64,
                              count=len(pick))
        wants, hists = self._keys_by_config()
        raws = list(map(values.__getitem__, pick.tolist()))
        filled = np.fromiter(map(bool, raws), dtype=bool, count=len(raws))
        use = np.flatnonzero(filled & wants.any(axis=0)[configs]).tolist() if len(self.keys) else []
        if not use:
            return
        decoded = self._decode_values(list(map(raws.__getitem__, use)))
        keyed_rows, keyed_buckets, keyed_configs = picked_rows[use], buckets[pick[use]], configs[use]
        for k, key in enumerate(self.keys):
            want = wants[k][keyed_configs]
            if not want.any():
                continue
            items = list(map(operator.attrgetter(self._value_fields[key]), decoded))
            present = np.fromiter(map(operator.is_not, items, itertools.repeat(None)), dtype=bool, count=len(items))
            found = np.flatnonzero(want & present)
            if len(found):
                chosen = list(map(items.__getitem__, found.tolist()))
                parts = np.fromiter(itertools.chain.from_iterable(map(NUMBERS, chosen)), dtype=np.float64,
                                    count=6 * len(chosen)).reshape(len(chosen), 6)
                self._write_key(self.keys[key], keyed_rows[found], keyed_buckets[found], parts,
                                _ItemHists(chosen), hists[k][keyed_configs[found]])

    def _keys_by_config(self) -> tuple[np.ndarray, np.ndarray]:
        """Per value key and configuration: whether it keeps the key, and with a histogram (``keys x configs``)."""
        if self._key_table_for != len(self._config_keys):
            wants = np.zeros((len(self.keys), len(self._config_keys)), dtype=bool)
            hists = np.zeros_like(wants)
            position = {key: k for k, key in enumerate(self.keys)}
            for config, kept in enumerate(self._config_keys):
                for key, with_hist in kept:
                    wants[position[key], config] = True
                    hists[position[key], config] = with_hist
            self._key_wants, self._key_hists, self._key_table_for = wants, hists, len(self._config_keys)
        return self._key_wants, self._key_hists

    def _write_key(self, store: _KeyColumns, rows: np.ndarray, buckets: np.ndarray, parts: np.ndarray,
                   hists: _Hists, with_hist: np.ndarray) -> None:
        """Write one value key's six numbers (``parts``, a row each) and, where kept, its histogram."""
        krows = store.krows(rows)
        kslots = (buckets // self.bucket_s).astype(np.int64) % store.slots
        # the key's ring may be shorter than the batch's span: per slot, only the newest bucket stays
        cell = krows * store.slots + kslots
        order = np.lexsort((buckets, cell))
        last_of_cell = np.r_[cell[order][1:] != cell[order][:-1], True]
        newest = np.zeros(len(parts), dtype=bool)
        newest[order[last_of_cell]] = True
        held = store.ring["bucket"][krows, kslots]
        use = np.flatnonzero(newest & (held <= buckets))  # never overwrite a newer bucket
        if not len(use):
            return
        krows, kslots, buckets, with_hist, parts = krows[use], kslots[use], buckets[use], with_hist[use], parts[use]
        store.ring["bucket"][krows, kslots] = buckets
        for pos, (name, _, _) in enumerate(_KeyColumns.PARTS):
            store.ring[name][krows, kslots] = parts[:, pos]
        newer = parts[:, 5] >= store.newest["ts"][krows]
        store.newest["value"][krows[newer]] = parts[newer, 4]
        store.newest["ts"][krows[newer]] = parts[newer, 5]
        if store.with_hist:
            self._write_hist(store, hists, use, krows, kslots, with_hist)

    def _write_hist(self, store: _KeyColumns, hists: _Hists, use: np.ndarray, krows: np.ndarray,
                    kslots: np.ndarray, with_hist: np.ndarray) -> None:
        """Replace the histograms of these (row, slot) cells, all entries in one vectorised add."""
        picked = np.flatnonzero(with_hist)
        if not len(picked):
            return
        hrows = store.hrows(krows[picked])
        h = store.hist["h"]  # after hrow(): it may have grown the array
        slots = kslots[picked]
        h[hrows, slots] = 0
        cells, counts, legacy = hists.cells(use[picked], store.bins)
        store.hist["legacy"][hrows, slots] = legacy
        rows = np.r_[np.repeat(hrows, cells[2]), np.repeat(hrows, counts[2])]
        cols = np.r_[np.repeat(slots, cells[2]), np.repeat(slots, counts[2])]
        if not len(rows):
            return
        np.add.at(h, (rows, cols, np.r_[cells[0], counts[0]]),
                  np.minimum(np.r_[cells[1], counts[1]], 65535).astype(np.uint16))

    # -- reading ---------------------------------------------------------------

    def view(self, rows: np.ndarray, window_s: float, now: float, default_interval: float,
             quiet: QuietTime | None = None, sites: np.ndarray | None = None) -> WindowView:
        """The window's evidence of ``rows``; with ``quiet``, the quiet buckets of each row's site
        (``sites``: its site position) are left out."""
        return WindowView(self, rows, window_s, now, default_interval, quiet, sites)

    def newest(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per row: the time of the newest round ever seen and whether it succeeded (NaN/False if none)."""
        ts = self.latest["ts"][rows]
        seen = np.isfinite(ts)
        return np.where(seen, ts, np.nan), seen & ~self.latest["failed"][rows]

    def newest_value(self, rows: np.ndarray, key: str) -> tuple[np.ndarray, np.ndarray]:
        """Per row: the newest value of ``key`` ever seen and its time (NaN when never)."""
        value, when = np.full(len(rows), np.nan), np.full(len(rows), np.nan)
        store = self.keys.get(key)
        if store is None:
            return value, when
        have, krows = store.lookup(rows)
        ts = store.newest["ts"][krows]
        seen = np.isfinite(ts)
        value[have] = np.where(seen, store.newest["value"][krows], np.nan)
        when[have] = np.where(seen, ts, np.nan)
        return value, when


class _Hists(Protocol):
    """Where a value key's histograms come from: decoded summaries or a pack's arrays."""

    def cells(self, chosen: np.ndarray, bins: SketchBins) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray],
                                                                    tuple[np.ndarray, np.ndarray, np.ndarray],
                                                                    np.ndarray]:
        """For the ``chosen`` items: sketch cells and legacy cells (bins, counts, entries each) and which
        items held a legacy histogram."""
        ...


@dataclass(frozen=True)
class _ItemHists:
    items: list[KeyValue]

    def cells(self, chosen: np.ndarray, bins: SketchBins) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray],
                                                                    tuple[np.ndarray, np.ndarray, np.ndarray],
                                                                    np.ndarray]:
        picked = [self.items[i] for i in chosen.tolist()]
        # the sketch is the first list at positions 6-7, the legacy histogram the first object there
        sketches = [a if type(a) is list else b if type(b) is list else [] for a, b in map(TAIL, picked)]
        legacies = [a if type(a) is dict else b if type(b) is dict else {} for a, b in map(TAIL, picked)]
        flags = np.fromiter(map(bool, legacies), dtype=bool, count=len(legacies))
        return sketch_cells(sketches, bins), legacy_cells(legacies, bins), flags


@dataclass(frozen=True)
class _PackHists:
    packed: PackedValues
    carrying: np.ndarray  # per item: its index among the pack's entries carrying the key

    def cells(self, chosen: np.ndarray, bins: SketchBins) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray],
                                                                    tuple[np.ndarray, np.ndarray, np.ndarray],
                                                                    np.ndarray]:
        flat, sizes = self.packed.sketches(self.carrying[chosen])
        none = np.zeros(0, dtype=np.int64)
        return (flat_sketch_cells(flat, sizes, bins), (none, none, np.zeros(len(chosen), dtype=np.int64)),
                np.zeros(len(chosen), dtype=bool))


def _labels_of(labels: dict[str, str] | str) -> dict[str, str]:
    return labels if isinstance(labels, dict) else _decode_labels(labels)


def _newest_per_cell(cell: np.ndarray, buckets: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Among candidate rows sharing a (row, slot) cell, only the newest bucket (ties: the last given)."""
    out = np.zeros(len(cell), dtype=bool)
    idx = np.flatnonzero(candidates)
    if not len(idx):
        return out
    order = idx[np.lexsort((np.arange(len(idx)), buckets[idx], cell[idx]))]
    last = np.r_[cell[order][1:] != cell[order][:-1], True]
    out[order[last]] = True
    return out


def _newest(ts: np.ndarray, failed: np.ndarray, rows: np.ndarray, last_ts: np.ndarray, last_failed: np.ndarray
            ) -> None:
    """Keep, per row, the newest round ever written (rows may repeat in a batch: newest wins)."""
    order = np.argsort(last_ts, kind="stable")
    rows, last_ts, last_failed = rows[order], last_ts[order], last_failed[order]
    newer = last_ts >= ts[rows]
    ts[rows[newer]] = last_ts[newer]  # fancy assignment: the last (newest) duplicate wins
    failed[rows[newer]] = last_failed[newer]


class WindowView:
    """The evidence of some checks over one window, computed lazily and vectorised.

    The window is rounded out to whole buckets: it starts at the bucket holding
    ``now - window`` and ends now, so ``span`` is between the window and one
    bucket more. Coverage compares the rounds seen with the rounds expected over
    that span at the check's own interval (estimated from its rounds), so time
    when the agent was silent lowers coverage instead of counting as down.
    """

    def __init__(self, matrix: EvidenceMatrix, rows: np.ndarray, window_s: float, now: float,
                 default_interval: float, quiet: QuietTime | None = None, sites: np.ndarray | None = None):
        self.m = matrix
        self.rows = rows
        self.window_s = window_s
        self.now = now
        self.default_interval = default_interval
        self.start = matrix.bucket_of(now - window_s)
        self.quiet = quiet if quiet and sites is not None else None
        self.sites = sites
        self.span: float | np.ndarray = max(now - self.start, 1e-9)
        if self.quiet is not None:  # quiet time is neither up nor down: the window expects fewer rounds
            assert sites is not None
            self.span = np.maximum(self.span - self.quiet.hidden_seconds(sites, self.start, now), 1e-9)
        self._keys: dict[str, tuple] = {}

    def _col(self, name: str) -> np.ndarray:
        return self.m.cols[name][self.rows]

    def _in_window(self, buckets: np.ndarray, positions: np.ndarray | None = None) -> np.ndarray:
        """Which buckets count: inside the window and, for ``positions`` (rows' places in this view;
        all when None), not quiet for their site."""
        inside = (buckets >= self.start) & (buckets <= self.now)
        if self.quiet is None or self.sites is None:
            return inside
        sites = self.sites if positions is None else self.sites[positions]
        return inside & ~self.quiet.hidden(buckets, sites)

    @cached_property
    def mask(self) -> np.ndarray:
        return self._in_window(self._col("bucket"))

    def _sum(self, name: str) -> np.ndarray:
        return np.where(self.mask, self._col(name), 0).sum(axis=1)

    @cached_property
    def ok(self) -> np.ndarray:
        return self._sum("ok")

    @cached_property
    def fail(self) -> np.ndarray:
        return self._sum("fail")

    @cached_property
    def rounds(self) -> np.ndarray:
        return self.ok + self.fail

    @cached_property
    def newest_ts(self) -> np.ndarray:
        last = np.where(self.mask, np.nan_to_num(self._col("last_ts"), nan=-np.inf), -np.inf)
        newest = last.max(axis=1) if last.shape[1] else np.full(len(self.rows), -np.inf)
        return np.where(np.isfinite(newest), newest, np.nan)

    @cached_property
    def interval(self) -> np.ndarray:
        """Each check's round interval, estimated from the spacing of its rounds in the window."""
        rounds = np.where(self.mask, self._col("ok") + self._col("fail"), 0)
        spread = np.where(rounds >= 2, np.nan_to_num(self._col("last_ts") - self._col("first_ts")), 0.0)
        gaps = np.where(rounds >= 2, rounds - 1, 0).sum(axis=1)
        total = spread.sum(axis=1)
        estimate = np.where(gaps > 0, total / np.maximum(gaps, 1), self.default_interval)
        return np.where(estimate > 0, estimate, self.default_interval)

    def coverage_of(self, count: np.ndarray) -> np.ndarray:
        return np.clip(count * self.interval / self.span, 0.0, 1.0)

    @cached_property
    def coverage(self) -> np.ndarray:
        return self.coverage_of(self.rounds)

    @cached_property
    def last_ok_ts(self) -> np.ndarray:
        """When a round last succeeded: the bucket's last round if it was good, else its first (a lower bound)."""
        ok = self.mask & (self._col("ok") > 0)
        when = np.where(self._col("last_failed"), self._col("first_ts"), self._col("last_ts"))
        best = np.where(ok, np.nan_to_num(when, nan=-np.inf), -np.inf).max(axis=1)
        return np.where(np.isfinite(best), best, np.nan)

    # -- values ----------------------------------------------------------------

    def _key(self, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, _KeyColumns | None]:
        """(positions having the key, their sub-rows, their window mask in the key's ring, the key's columns)."""
        cached = self._keys.get(key)
        if cached is None:
            store = self.m.keys.get(key)
            if store is None:
                empty = np.zeros(0, dtype=np.int64)
                cached = (empty, empty, np.zeros((0, 1), dtype=bool), None)
            else:
                have, krows = store.lookup(self.rows)
                cached = (have, krows, self._in_window(store.ring["bucket"][krows], have), store)
            self._keys[key] = cached
        return cached

    def _reduce(self, key: str, part: str, fill: float, how: str) -> np.ndarray:
        have, krows, mask, store = self._key(key)
        out = np.full(len(self.rows), 0.0 if how == "sum" else np.nan)
        if store is None or not len(have):
            return out
        values = np.where(mask, store.ring[part][krows], fill)
        if how == "sum":
            out[have] = values.sum(axis=1)
        else:
            reduced = values.min(axis=1) if how == "min" else values.max(axis=1)
            out[have] = np.where(np.isfinite(reduced), reduced, np.nan)
        return out

    def count(self, key: str) -> np.ndarray:
        return self._reduce(key, "cnt", 0, "sum")

    def total(self, key: str) -> np.ndarray:
        return self._reduce(key, "sum", 0.0, "sum")

    def minimum(self, key: str) -> np.ndarray:
        return self._reduce(key, "min", np.inf, "min")

    def maximum(self, key: str) -> np.ndarray:
        return self._reduce(key, "max", -np.inf, "max")

    def value_ts(self, key: str) -> np.ndarray:
        return self._reduce(key, "last_ts", -np.inf, "max")

    def last(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        have, krows, mask, store = self._key(key)
        value, when = np.full(len(self.rows), np.nan), np.full(len(self.rows), np.nan)
        if store is None or not len(have):
            return value, when
        ts = np.where(mask, store.ring["last_ts"][krows], -np.inf)
        slot = ts.argmax(axis=1)
        pick = np.arange(len(krows))
        newest = ts[pick, slot]
        seen = np.isfinite(newest)
        value[have] = np.where(seen, store.ring["last"][krows][pick, slot], np.nan)
        when[have] = np.where(seen, newest, np.nan)
        return value, when

    def quantile(self, key: str, q: float) -> np.ndarray:
        """The q-quantile of the key's sketches over the window (NaN without data)."""
        return self.quantile_bounds(key, q)[0]

    def quantile_bounds(self, key: str, q: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(shown value, lower bound, upper bound) of the q-quantile over the window, NaN without data.

        The exact quantile of the rounds' values (numpy's default method) is
        proven to lie within the bounds; see ``commune_collector.judge.sketchbins``.
        """
        cached = self._keys.get((key, q))
        if cached is not None:
            return cached
        have, krows, mask, store = self._key(key)
        out = tuple(np.full(len(self.rows), np.nan) for _ in range(3))
        if store is None or not store.with_hist or not len(have):
            return out
        hrows = np.full(len(krows), -1, dtype=np.int64)
        inside = krows < len(store.hist_index)
        hrows[inside] = store.hist_index[krows[inside]]
        use = np.flatnonzero(hrows >= 0)
        for start in range(0, len(use), _QUANTILE_ROWS):
            part = use[start:start + _QUANTILE_ROWS]
            # one gather, one masked sum in C (a loop over slots is eight times slower at 10,000 sites)
            merged = store.hist["h"][hrows[part]].sum(axis=1, where=mask[part][:, :, None], dtype=np.int64)
            value, low, high = store.bins.quantile(merged, q)
            legacy = (store.hist["legacy"][hrows[part]] & mask[part]).any(axis=1)
            for target, got in zip(out, (value, np.where(legacy, low / LEGACY_FACTOR, low),
                                         np.where(legacy, high * LEGACY_FACTOR, high)), strict=True):
                target[have[part]] = got
        value, low, high = out
        seen = ~np.isnan(value)
        low = np.where(seen, np.fmax(low, self.minimum(key)), np.nan)  # the window's exact extremes
        high = np.where(seen, np.fmin(high, self.maximum(key)), np.nan)
        out = (np.clip(value, low, high), low, high)
        self._keys[(key, q)] = out
        return out
