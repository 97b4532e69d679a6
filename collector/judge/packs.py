"""Hour packs: one closed hour of one check across every site, as arrays, so a cold pass reads columns.

A cold pass (no usable checkpoint: a first start, a criteria change) used to
read every kept check's summary of a day one row at a time: at 10,000 sites
1.8 million primary-key look-ups, eight Python objects a row and a JSON text
to decode for most of them. Once an hour has closed its summaries change only
when late (spooled) evidence is folded into it, so the judge writes each
closed hour of each check it reads once more, packed: per site the round
counts and times, and per value key the criteria read its six numbers and,
where a quantile needs it, its sketch. A cold pass then reads a few hundred
packs and copies arrays.

A pack holds every site's summary of its (hour, check) when it was written,
and only that: a later write to the hour's summary of that check (the
aggregator folding spooled evidence) deletes the pack in the same transaction
(migration 0600's triggers), so a pack that exists is current. The reader
still checks that a pack holds every value key (and sketch) today's criteria
read for that check, and reads the rows instead when it does not. Sketches
are kept as stored (indices of the summary's own bins), not as the matrix's
threshold-dependent bins: a changed threshold does not make packs useless.
Legacy histograms (summaries written before sketches) are not packed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import msgspec
import numpy as np

from commune_collector.judge.stored_values import values_decoder

FORMAT = 1
_NUMBERS = ("count", "sum", "min", "max", "last", "last_ts")


class _PackedKey(msgspec.Struct, array_like=True):
    at: bytes  # int32: the entries (positions in the pack) that carry this key
    numbers: bytes  # float64 (len(at), 6): count, sum, min, max, last, last_ts
    sketch_sizes: bytes | None = None  # int32 per carrying entry: its sketch's (gap, count) pairs
    sketch: bytes | None = None  # int64: the sketches' flat ``[i0, c0, gap, c1, ...]``, one after another


class _Body(msgspec.Struct, array_like=True):
    format: int
    sites: bytes  # the entries' sites, "\n"-joined (a reader maps the same text once)
    ok: bytes  # int32
    fail: bytes  # int32
    first: bytes  # float64
    last: bytes  # float64
    failed: bytes  # bool: whether the bucket's last round failed
    values: dict[str, _PackedKey]  # value key -> its entries' numbers (and sketches)
    sketched: list[str]  # the value keys packed with their sketches


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(_Body).decode


@dataclass(frozen=True)
class PackedValues:
    """One value key of a pack: which entries carry it, their six numbers, and their sketches if packed."""

    position: np.ndarray  # per entry of the pack: its index in ``numbers`` (-1: the entry lacks the key)
    numbers: np.ndarray  # (carrying entries, 6)
    sketch_sizes: np.ndarray | None  # per carrying entry
    sketch_starts: np.ndarray | None
    sketch: np.ndarray | None

    def sketches(self, carrying: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The flat sketches of some carrying entries, one after another, and their sizes (pairs)."""
        assert self.sketch is not None and self.sketch_sizes is not None and self.sketch_starts is not None
        sizes = self.sketch_sizes[carrying]
        starts = self.sketch_starts[carrying] * 2
        lengths = sizes * 2
        total = int(lengths.sum())
        if not total:
            return np.zeros(0, dtype=np.int64), sizes
        offsets = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
        return self.sketch[np.arange(total) + offsets], sizes


@dataclass(frozen=True)
class HourPack:
    """A decoded pack: arrays over its entries (one per site that reported the check that hour)."""

    bucket: float
    check: str
    sites: bytes
    ok: np.ndarray
    fail: np.ndarray
    first: np.ndarray
    last: np.ndarray
    failed: np.ndarray
    values: dict[str, PackedValues]
    sketched: frozenset[str]

    def __len__(self) -> int:
        return len(self.ok)

    def site_list(self) -> list[str]:
        return self.sites.decode().split("\n") if self.sites else []

    def holds(self, keys: Mapping[str, bool]) -> bool:
        """Whether the pack carries every value key given (with its sketch where True): what the
        criteria read of this check today, which may be more than when it was packed."""
        packed = self.values.keys()
        return all(key in packed and (not sketch or key in self.sketched) for key, sketch in keys.items())


@dataclass(frozen=True)
class PackBatch:
    """A pack handed to the matrix, its entries as numbers of the source's key table (-1: not read)."""

    keys: Sequence[tuple[str, str, str, str]]
    numbers: np.ndarray
    pack: HourPack
    summaries: int = field(default=0)

    def __len__(self) -> int:
        return len(self.numbers)


def encode(rows: Sequence[tuple], keys: Mapping[str, bool]) -> bytes | None:
    """A pack of one (hour, check) from its summaries ``(site, rounds_ok, rounds_fail, first_ts, last_ts,
    failed, values_json)``, keeping the value ``keys`` (True: with the sketch). None when a kept key
    carries a legacy histogram: such an hour is read as rows."""
    sites, oks, fails, firsts, lasts, failed, raws = zip(*rows, strict=True) if rows else ((),) * 7
    body_values: dict[str, _PackedKey] = {}
    wanted = [key for key in keys if any(raws)]
    if wanted:
        decode, fields = values_decoder(wanted)
        decoded = decode([raw if raw else b"{}" for raw in raws])
        for key in wanted:
            packed = _pack_key([getattr(d, fields[key]) for d in decoded], keys[key])
            if packed is False:
                return None
            if packed is not None:
                body_values[key] = packed
    body = _Body(FORMAT, "\n".join(sites).encode(), np.asarray(oks, np.int32).tobytes(),
                 np.asarray(fails, np.int32).tobytes(), np.asarray(firsts, np.float64).tobytes(),
                 np.asarray(lasts, np.float64).tobytes(), np.asarray(failed, np.bool_).tobytes(), body_values,
                 sorted(key for key, sketch in keys.items() if sketch))
    return _encode(body)


def _pack_key(items: list, with_sketch: bool) -> _PackedKey | None | bool:
    at = [i for i, item in enumerate(items) if item is not None]
    if not at:
        return None
    carried = [items[i] for i in at]
    numbers = np.array([[getattr(item, n) for n in _NUMBERS] for item in carried], dtype=np.float64)
    if not with_sketch:
        return _PackedKey(np.asarray(at, np.int32).tobytes(), numbers.tobytes())
    sketches = []
    for item in carried:
        tail = [t for t in (item.tail6, item.tail7) if t is not None]
        if any(type(t) is dict for t in tail):
            return False  # a legacy histogram
        sketches.append(next((t for t in tail if type(t) is list), []))
    sizes = np.fromiter(map(len, sketches), dtype=np.int32, count=len(sketches)) // 2
    flat = np.fromiter((v for s in sketches for v in s), dtype=np.int64, count=int(sizes.sum()) * 2)
    return _PackedKey(np.asarray(at, np.int32).tobytes(), numbers.tobytes(), sizes.tobytes(), flat.tobytes())


def decode(bucket: float, check: str, data: bytes | memoryview) -> HourPack | None:
    """A stored pack, or None when it was written in another format (it is read as rows)."""
    try:
        body = _decode(data)
    except msgspec.DecodeError:
        return None
    if body.format != FORMAT:
        return None
    ok = np.frombuffer(body.ok, np.int32)
    values = {key: _unpack_key(packed, len(ok)) for key, packed in body.values.items()}
    return HourPack(bucket, check, body.sites, ok, np.frombuffer(body.fail, np.int32),
                    np.frombuffer(body.first, np.float64), np.frombuffer(body.last, np.float64),
                    np.frombuffer(body.failed, np.bool_), values, frozenset(body.sketched))


def _unpack_key(packed: _PackedKey, entries: int) -> PackedValues:
    at = np.frombuffer(packed.at, np.int32)
    position = np.full(entries, -1, dtype=np.int64)
    position[at] = np.arange(len(at))
    numbers = np.frombuffer(packed.numbers, np.float64).reshape(len(at), 6)
    if packed.sketch_sizes is None or packed.sketch is None:
        return PackedValues(position, numbers, None, None, None)
    sizes = np.frombuffer(packed.sketch_sizes, np.int32).astype(np.int64)
    return PackedValues(position, numbers, sizes, np.cumsum(sizes) - sizes, np.frombuffer(packed.sketch, np.int64))


def needed_keys(configs: Iterable[tuple[tuple[str, bool], ...]]) -> dict[str, bool]:
    """The union of some configurations' kept value keys, with a sketch where any of them wants one."""
    out: dict[str, bool] = {}
    for kept in configs:
        for key, sketch in kept:
            out[key] = out.get(key, False) or sketch
    return out
