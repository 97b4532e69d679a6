"""The evidence matrix on disk, so a restarted collector judges in seconds, not minutes.

Without it the first pass after a start re-reads a day of evidence for every
judged check: at 10,000 sites that is most of the summaries table (gigabytes)
and half a minute or more. With it the judge loads the matrix it last saved
and reads only what was written since: the hours from the saved one on, and
the old buckets the ``judge_backfill`` log recorded. The log is trimmed only
up to what a saved matrix already holds, so nothing read after the last save
is lost by a crash.

A checkpoint is used only when it was made for the same criteria, bucket size
and ring (a fingerprint); anything else means a full read, never a wrong one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import mmap
import os
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from commune_collector.judge.criteria import CriteriaConfig
from commune_collector.judge.matrix import EvidenceMatrix, _Columns

log = logging.getLogger("commune_collector.judge")
FORMAT = 2  # 2: sketch bins near thresholds and a legacy flag per cell
MAGIC = b"CMJUDGE1"  # the raw layout; a file without it is read as the .npz of earlier versions
_ALIGN = 64
PART_STAMP = "cold-part"  # a helper's part of a cold read (store/judge_helper.py), not a checkpoint to resume


def fingerprint(config: CriteriaConfig, matrix: EvidenceMatrix) -> str:
    """What the saved arrays depend on: the criteria, the bucket size and every ring's length."""
    parts = {"format": FORMAT, "criteria": config.model_dump(mode="json"), "bucket": matrix.bucket_s,
             "slots": matrix.slots, "keys": {k: [c.slots, c.with_hist, c.bins.size] for k, c in matrix.keys.items()}}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def save(matrix: EvidenceMatrix, path: Path, stamp: str, extra: dict[str, Any]) -> None:
    """Write atomically (temp file, fsync, rename): a crash mid-save leaves the previous checkpoint."""
    n = matrix.rows
    arrays: dict[str, np.ndarray] = {}
    for name, arr in matrix.cols.arrays.items():
        arrays[f"base/{name}"] = arr[:n]
    for name, arr in matrix.latest.arrays.items():
        arrays[f"latest/{name}"] = arr[:n]
    for key, store in matrix.keys.items():
        k = f"key{list(matrix.keys).index(key)}"
        arrays[f"{k}/index"] = store.index[:n]
        for name, arr in store.ring.arrays.items():
            arrays[f"{k}/ring/{name}"] = arr[:store.used]
        for name, arr in store.newest.arrays.items():
            arrays[f"{k}/newest/{name}"] = arr[:store.used]
        arrays[f"{k}/hist_index"] = store.hist_index[:store.used]
        for name, arr in store.hist.arrays.items():
            arrays[f"{k}/hist/{name}"] = arr[:store.hist_used]
    meta = {"stamp": stamp, "extra": extra, "site": matrix.site, "check": matrix.check, "probe": matrix.probe,
            "labels": [raw if isinstance(raw, str) else json.dumps(raw) for raw in matrix.raw_labels],
            "used": {key: [s.used, s.hist_used] for key, s in matrix.keys.items()}}
    tmp = path.with_name(path.name + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, "wb") as f:
        _write_raw(f, meta, arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _write_raw(f: BinaryIO, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """MAGIC, the header's length (8 bytes, little-endian), the JSON header, then each array's bytes at
    its offset (64-byte aligned): a restart reads each array straight into its final place."""
    table, offset = [], 0
    for name, arr in arrays.items():
        offset = -(-offset // _ALIGN) * _ALIGN
        table.append([name, arr.dtype.str, list(arr.shape), offset])
        offset += arr.nbytes
    header = json.dumps({"meta": meta, "arrays": table}).encode()
    start = -(-(len(MAGIC) + 8 + len(header)) // _ALIGN) * _ALIGN
    f.write(MAGIC + len(header).to_bytes(8, "little") + header)
    for (_, _, _, at), arr in zip(table, arrays.values(), strict=True):
        f.seek(start + at)
        if arr.nbytes:
            f.write(memoryview(np.ascontiguousarray(arr)).cast("B"))
    f.truncate(start + offset)


def _read_raw(f: BinaryIO) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The header, and each array as a copy-on-write view of the file (``mmap.ACCESS_COPY``).

    Nothing is copied up front: a page is read when the judge first touches it
    (most of them, in the first evaluation) and copied only when it writes to
    it. ``save`` replaces the file by renaming, so a mapped file never changes.
    """
    size = int.from_bytes(f.read(8), "little")
    header = json.loads(f.read(size))
    start = -(-(len(MAGIC) + 8 + size) // _ALIGN) * _ALIGN
    mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    arrays = {}
    for name, dtype, shape, at in header["arrays"]:
        kind = np.dtype(dtype)
        count = math.prod(shape)
        if start + at + count * kind.itemsize > len(mapped):
            raise ValueError(f"{name} is truncated")
        arrays[name] = (np.frombuffer(mapped, kind, count=count, offset=start + at).reshape(shape) if count
                        else np.empty(shape, dtype=kind))
    return header["meta"], arrays


def load(matrix: EvidenceMatrix, path: Path, stamp: str) -> dict[str, Any] | None:
    """Fill an empty matrix from ``path``; return the saved ``extra``, or None when it cannot be used.

    Reads this module's raw layout, and the ``.npz`` archive earlier versions wrote (same arrays).
    """
    if not path.exists():
        return None
    try:
        with open(path, "rb") as f:
            magic = f.read(len(MAGIC))
            if magic == MAGIC:
                meta, data = _read_raw(f)
            else:
                f.seek(0)
                with np.load(f, allow_pickle=False) as npz:
                    meta = json.loads(str(npz["meta"]))
                    data = {name: npz[name] for name in npz.files if name != "meta"}
        if meta.get("stamp") != stamp:
            log.info("judge checkpoint %s was made for other criteria: reading the evidence again", path)
            return None
        _restore(matrix, data, meta)
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
        log.warning("judge checkpoint %s unreadable (%s): reading the evidence again", path, exc)
        return None
    return dict(meta["extra"])


def _restore(matrix: EvidenceMatrix, data: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    if matrix.rows:
        raise ValueError("a checkpoint is restored into an empty matrix")
    n = len(meta["site"])
    _check(matrix.cols, data, "base", n)
    _check(matrix.latest, data, "latest", n)
    for position, (key, store) in enumerate(matrix.keys.items()):  # all checked before anything is set
        used, hist_used = meta["used"][key]
        _check(store.ring, data, f"key{position}/ring", used)
        _check(store.newest, data, f"key{position}/newest", used)
        if store.with_hist:
            _check(store.hist, data, f"key{position}/hist", hist_used)
    matrix.add_rows(meta["site"], meta["check"], meta["probe"], meta["labels"], grow=False)
    _fill(matrix.cols, data, "base", n)
    _fill(matrix.latest, data, "latest", n)
    for position, (key, store) in enumerate(matrix.keys.items()):
        k = f"key{position}"
        used, hist_used = meta["used"][key]
        store.index = np.array(data[f"{k}/index"], dtype=np.int64)
        store.used, store.hist_used = used, hist_used
        _fill(store.ring, data, f"{k}/ring", used)
        _fill(store.newest, data, f"{k}/newest", used)
        store.hist_index = np.array(data[f"{k}/hist_index"], dtype=np.int64)
        if store.with_hist:
            _fill(store.hist, data, f"{k}/hist", hist_used)


def _check(cols: _Columns, data: dict[str, np.ndarray], prefix: str, rows: int) -> None:
    for name, arr in cols.arrays.items():
        saved = data[f"{prefix}/{name}"]
        if saved.shape != (rows, *arr.shape[1:]):
            raise ValueError(f"{prefix}/{name} has shape {saved.shape}, expected {(rows, *arr.shape[1:])}")


def _fill(cols: _Columns, data: dict[str, np.ndarray], prefix: str, rows: int) -> None:
    """Take the saved arrays as the columns (no copy when the dtype matches): exactly ``rows`` long."""
    _check(cols, data, prefix, rows)
    for name, arr in cols.arrays.items():
        cols.arrays[name] = np.require(data[f"{prefix}/{name}"], dtype=arr.dtype, requirements=["C", "W"])
    cols.capacity = rows
