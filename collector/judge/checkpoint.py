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
import os
from pathlib import Path
from typing import Any

import numpy as np

from commune_collector.judge.criteria import CriteriaConfig
from commune_collector.judge.matrix import EvidenceMatrix, _Columns

log = logging.getLogger("commune_collector.judge")
FORMAT = 2  # 2: sketch bins near thresholds and a legacy flag per cell


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
    arrays["meta"] = np.array(json.dumps(meta))
    tmp = path.with_name(path.name + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load(matrix: EvidenceMatrix, path: Path, stamp: str) -> dict[str, Any] | None:
    """Fill an empty matrix from ``path``; return the saved ``extra``, or None when it cannot be used."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("stamp") != stamp:
                log.info("judge checkpoint %s was made for other criteria: reading the evidence again", path)
                return None
            _restore(matrix, data, meta)
    except (OSError, ValueError, KeyError) as exc:
        log.warning("judge checkpoint %s unreadable (%s): reading the evidence again", path, exc)
        return None
    return dict(meta["extra"])


def _restore(matrix: EvidenceMatrix, data: Any, meta: dict[str, Any]) -> None:
    for site, check, probe, labels in zip(meta["site"], meta["check"], meta["probe"], meta["labels"], strict=True):
        matrix.row_for(site, check, probe, labels)
    n = matrix.rows
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


def _fill(cols: _Columns, data: Any, prefix: str, rows: int) -> None:
    cols.grow(rows)
    for name in cols.arrays:
        saved = data[f"{prefix}/{name}"]
        if saved.shape[1:] != cols.arrays[name].shape[1:]:
            raise ValueError(f"{prefix}/{name} has shape {saved.shape}, expected {cols.arrays[name].shape}")
        cols.arrays[name][:rows] = saved
