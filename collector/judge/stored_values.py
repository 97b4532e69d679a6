"""The value statistics of a stored summary as the judge reads them: decoded in bulk, sketches as arrays.

A summary's ``values_json`` maps each value key to ``ValueStats.to_json``:
``[count, sum, min, max, last, last_ts, sketch-or-histogram...]``. The
matrix (judge/matrix.py) reads them from rows, the hour packs
(judge/packs.py) pack and unpack them; both go through here.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable
from typing import Any

import msgspec
import numpy as np

from commune_collector.judge.sketchbins import SketchBins


class KeyValue(msgspec.Struct, array_like=True):
    """One value key of a summary (``ValueStats.to_json``); positions 6-7 hold the sketch or legacy histogram."""

    count: float
    sum: float
    min: float
    max: float
    last: float
    last_ts: float
    tail6: Any = None
    tail7: Any = None


NUMBERS = operator.attrgetter("count", "sum", "min", "max", "last", "last_ts")
TAIL = operator.attrgetter("tail6", "tail7")


def sketch_of(item: KeyValue) -> list[int] | dict | None:
    """The key's sketch (a list), its legacy histogram (a dict), or None."""
    a, b = TAIL(item)
    return a if type(a) in (list, dict) else b if type(b) in (list, dict) else None


def sketch_cells(sketches: list[list[int]], bins: SketchBins) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stored sketches (``[i0, c0, gap, c1, ...]``) as (bins, counts, entries per sketch)."""
    sizes = np.fromiter(map(len, sketches), dtype=np.int64, count=len(sketches)) // 2
    flat = np.fromiter(itertools.chain.from_iterable(sketches), dtype=np.int64, count=int(sizes.sum()) * 2)
    return flat_sketch_cells(flat, sizes, bins)


def flat_sketch_cells(flat: np.ndarray, sizes: np.ndarray, bins: SketchBins) -> tuple[np.ndarray, np.ndarray,
                                                                                         np.ndarray]:
    """Sketches laid one after another in ``flat`` (``sizes``: pairs each) as (bins, counts, entries each)."""
    gaps, counts = flat[0::2], flat[1::2]
    starts = np.cumsum(sizes) - sizes
    # indices are gap-coded within each sketch: a cumulative sum restarted at each sketch's first entry
    total = np.cumsum(gaps)
    base = np.repeat(total[starts[sizes > 0]] - gaps[starts[sizes > 0]], sizes[sizes > 0])
    return bins.of_sketch(total - base), counts, sizes


def legacy_cells(legacies: list[dict], bins: SketchBins) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Legacy histograms (``{"index": count}``) as (bins, counts, entries per histogram)."""
    sizes = np.fromiter((len(x) for x in legacies), dtype=np.int64, count=len(legacies))
    n = int(sizes.sum())
    index = np.fromiter((int(k) for x in legacies for k in x), dtype=np.int64, count=n)
    counts = np.fromiter((c for x in legacies for c in x.values()), dtype=np.int64, count=n)
    return bins.of_legacy(index), counts, sizes


def values_decoder(keys: list[str]) -> tuple[Callable[[list[Any]], list[Any]], dict[str, str]]:
    """A decoder of many ``values_json`` at once that builds only the keys the matrix keeps, and each
    key's attribute name in what it returns.

    A summary carries ~8 value keys and the judge keeps one or two of them. The
    fast path decodes a whole batch in one msgspec call into a struct holding
    only the kept keys (msgspec skips the others without building anything).
    msgspec does not accept ``"`` in a field's JSON name, and every key with
    labels has some (``icmp_rtt_seconds{stat="avg"}``): the batch's text has
    its escaped quotes turned into ``'`` first, which is exact only when the
    text has no ``'`` of its own. Anything else (a ``'`` or ``\\`` in the text,
    evidence handed over as dicts) takes the per-summary path, which gives
    the same objects.
    """
    fields = {key: f"k{n}" for n, key in enumerate(keys)}
    spec = [(name, KeyValue | None, None) for name in fields.values()]
    plain = msgspec.defstruct("Values", spec)
    fast = all("\\" not in k and "'" not in k and all(ord(ch) >= 32 for ch in k) for k in keys)
    many = msgspec.json.Decoder(list[msgspec.defstruct(  # type: ignore[misc]
        "QuotedValues", spec, rename={name: key.replace('"', "'") for key, name in fields.items()})]).decode
    outer = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode
    one = msgspec.json.Decoder(KeyValue).decode

    def each(raw: dict[str, list] | str | bytes) -> Any:
        if isinstance(raw, dict):  # evidence handed over in memory (tests, fixtures)
            return plain(**{name: KeyValue(*raw[key][:8]) for key, name in fields.items() if raw.get(key)})
        found = outer(raw)
        return plain(**{name: one(found[key]) for key, name in fields.items() if key in found})

    def decode(raws: list[Any]) -> list[Any]:
        kinds = set(map(type, raws))
        if fast and kinds == {str}:
            text = "[" + ",".join(raws) + "]"
            if "'" not in text:
                try:
                    return many(text.replace('\\"', "'"))
                except msgspec.DecodeError:  # e.g. a key ending in a backslash: the exact path decides
                    pass
        elif fast and kinds == {bytes}:  # as the store hands them over to a cold pass: no text built
            data = b"[" + b",".join(raws) + b"]"
            if b"'" not in data:
                try:
                    return many(data.replace(b'\\"', b"'"))
                except msgspec.DecodeError:
                    pass
        return [each(r) for r in raws]

    return decode, fields


