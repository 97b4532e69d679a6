"""The judge's bulk loading of summaries gives exactly what a row-by-row reference gives.

``EvidenceMatrix`` decodes a batch's ``values_json`` in one msgspec call (escaped
quotes in key names turned into ``'`` first) and writes each kept key with
vectorised operations. The reference here decodes each summary with
``json.loads`` and picks its kept keys one by one. On varied evidence (sketches
and legacy histograms at either position, rows without values, values given
as dicts or bytes, keys that force the exact per-summary path, duplicates and
out-of-order buckets in a batch, old buckets, relabelled checks), every array
of the two matrices must be equal, and so must every criterion's outcome
under the shipped criteria.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import msgspec
import numpy as np
import pytest

from commune_collector.evidence import ValueStats, hist_index
from commune_collector.judge import checkpoint, load_criteria
from commune_collector.judge import facts as facts_mod
from commune_collector.judge import matrix as matrix_mod
from commune_collector.judge.evaluate import (
    FAILED,
    MET,
    UNKNOWN,
    Evaluator,
    SiteFacts,
    SiteIndex,
    key_specs,
)
from commune_collector.judge.matrix import BucketRow, EvidenceMatrix, KeySpec
from commune_collector.judge.stored_values import NUMBERS, KeyValue
from testsupport.synth import fast_bucket

ROOT = Path(__file__).resolve().parents[1]
H = 3600.0
NOW = 1_800_000_000.0 // H * H + 40 * 60
ICMP = {'icmp_rtt_seconds{stat="avg"}': (0.025, 0.01), "icmp_jitter_seconds": (0.003, 0.002),
        "icmp_loss_ratio": (0.002, 0.002), 'icmp_rtt_seconds{stat="max"}': (0.04, 0.02)}
UPS = {"power_on_battery": (0.0, 0.0), "power_battery_runtime_seconds": (2400.0, 100.0),
       "power_battery_charge_ratio": (1.0, 0.0)}
CHECKS = [("link/fiber/icmp/provincial-dc", "icmp", {"link": "fiber", "role": "primary", "target": "provincial-dc"},
           ICMP),
          ("link/lte/icmp/provincial-dc", "icmp", {"link": "lte", "role": "backup", "target": "provincial-dc"}, ICMP),
          ("power/ups", "ups_nut", {"ups": "ups", "source": "nut", "target": "ups"}, UPS),
          ("device/video-conference/icmp", "icmp", {"device": "video-conference", "kind": "ping", "required": "true",
                                                    "target": "video-conference", "role": "video_conference"}, ICMP)]


class ReferenceMatrix(EvidenceMatrix):
    """Values decoded one summary at a time with ``json``, kept keys picked one by one."""

    def _load_values(self, pick: np.ndarray, rows: np.ndarray, buckets: np.ndarray, values: tuple) -> None:
        per_key: dict[str, list[tuple[int, float, list, bool]]] = {}
        for i in pick.tolist():
            raw, row = values[i], int(rows[i])
            if not raw or not self.row_keys[row]:
                continue
            decoded = raw if isinstance(raw, dict) else json.loads(raw)
            for key, with_hist in self.row_keys[row]:
                if decoded.get(key) is not None:
                    per_key.setdefault(key, []).append((row, float(buckets[i]), decoded[key], with_hist))
        for key, found in per_key.items():
            items = [KeyValue(*f[2][:8]) for f in found]
            self._write_key(self.keys[key], np.array([f[0] for f in found], dtype=np.int64),
                            np.array([f[1] for f in found]), np.array([NUMBERS(i) for i in items], dtype=np.float64),
                            matrix_mod._ItemHists(items), np.array([f[3] for f in found], dtype=bool))


def _specs() -> tuple[object, dict[str, KeySpec]]:
    config = load_criteria(ROOT / "config" / "criteria.yaml")
    power = {facts_mod.ON_BATTERY_KEY: KeySpec(3600.0, lambda probe, check, labels: facts_mod.is_power(probe, labels))}
    return config, key_specs(config, power)


def _values(rng: random.Random, summary: object, batch_odd: str) -> object:
    """The summary's values as the store or a test source might hand them over, varied."""
    values = summary.values_json()  # type: ignore[attr-defined]
    for key, stats in list(values.items()):
        roll = rng.random()
        if stats[6] and roll < 0.15:  # a legacy row: the x 2^(1/4) histogram as an object at position 6
            legacy: dict[str, int] = {}
            for _ in range(5):
                i = str(hist_index(rng.uniform(0.005, 0.3)))
                legacy[i] = legacy.get(i, 0) + rng.randint(1, 20)
            values[key] = stats[:6] + [legacy]
        elif stats[6] and roll < 0.25:  # the sketch and a legacy histogram (a merged row), legacy at 7
            values[key] = stats[:7] + [{str(hist_index(0.02)): 3}]
        elif roll < 0.3:
            del values[key]
    if batch_odd == "quote":
        values["snmp_if_name{descr='x'}"] = [1, 1.0, 1.0, 1.0, 1.0, 1.0, None]
    elif batch_odd == "backslash":
        values["host_dir_C:\\"] = [1, 1.0, 1.0, 1.0, 1.0, 1.0, None]  # ends in a backslash: not fast-decodable
    form = rng.random()
    if form < 0.1:
        return None
    if form < 0.2:
        return {k: ValueStats.from_json(v).to_json() for k, v in values.items()} if rng.random() < 0.5 else values
    text = msgspec.json.encode(values)
    return text if form < 0.25 else text.decode()


def _batches(seed: int) -> list[list[BucketRow]]:
    rng = random.Random(seed)
    sites = [f"s{n:03d}" for n in range(25)]
    rows = []
    for site in sites:
        for check, probe, labels, values in CHECKS:
            if rng.random() < 0.1:
                continue
            if probe == "icmp" and rng.random() < 0.3:  # a link or device that fails its criteria
                values = {**values, "icmp_loss_ratio": (0.08, 0.02), 'icmp_rtt_seconds{stat="avg"}': (0.2, 0.05)}
            for h in range(30):  # 24 h criteria: the oldest hours are past the ring
                bucket = NOW // H * H - h * H
                if rng.random() < 0.15:
                    continue
                failed = rng.randint(0, 3) if rng.random() < 0.2 else 0
                summary = fast_bucket(site, check, probe, labels, bucket, 120 if h else 80, failed, values, rng)
                text_labels = msgspec.json.encode({**labels, **({"note": "x"} if rng.random() < 0.03 else {})})
                rows.append([bucket, site, check, probe, text_labels.decode(), summary.rounds_ok,
                             summary.rounds_fail, summary.first_ts, summary.last_ts, summary.last_reason, summary])
    rng.shuffle(rows)
    batches, at = [], 0
    while at < len(rows):
        size = rng.randint(1, 400)
        odd = rng.choice(["", "", "quote", "backslash"])
        batch = []
        for r in rows[at:at + size]:
            batch.append(BucketRow(*r[:10], _values(rng, r[10], odd)))
            if rng.random() < 0.05:  # the same bucket again in the batch: more rounds, other values
                again = fast_bucket(r[1], r[2], r[3], json.loads(r[4]), r[0], 120, 0, ICMP if "icmp" in r[2] else UPS,
                                    rng)
                batch.append(BucketRow(*r[:5], again.rounds_ok + 1, 0, again.first_ts, again.last_ts + 1, "",
                                       _values(rng, again, odd)))
        batches.append(batch)
        at += size
    return batches


def _arrays(m: EvidenceMatrix) -> dict[str, np.ndarray]:
    out = {f"base/{k}": v[:m.rows] for k, v in m.cols.arrays.items()}
    out.update({f"latest/{k}": v[:m.rows] for k, v in m.latest.arrays.items()})
    for key, store in m.keys.items():
        index = np.full(m.rows, -1, dtype=np.int64)  # the index grows only as far as its last keyed row
        index[:min(m.rows, len(store.index))] = store.index[:m.rows]
        out[f"{key}/index"] = index
        out.update({f"{key}/ring/{k}": v[:store.used] for k, v in store.ring.arrays.items()})
        out.update({f"{key}/newest/{k}": v[:store.used] for k, v in store.newest.arrays.items()})
        out.update({f"{key}/hist/{k}": v[:store.hist_used] for k, v in store.hist.arrays.items()})
    return out


def _assert_same(a: EvidenceMatrix, b: EvidenceMatrix) -> None:
    assert (a.site, a.check, a.probe, a.labels) == (b.site, b.check, b.probe, b.labels)
    left, right = _arrays(a), _arrays(b)
    assert left.keys() == right.keys()
    for name in left:
        np.testing.assert_array_equal(left[name], right[name], err_msg=name)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_bulk_loading_equals_the_row_by_row_reference(seed: int) -> None:
    config, specs = _specs()
    fast, reference = EvidenceMatrix(H, config.max_window, specs), ReferenceMatrix(H, config.max_window, specs)
    batches = _batches(seed)
    for n, batch in enumerate(batches):  # several passes, as a running judge makes them
        now = NOW - (len(batches) - n) * 60.0
        assert fast.load([batch], now) == reference.load([batch], now)
    _assert_same(fast, reference)
    assert fast.keys['icmp_rtt_seconds{stat="avg"}'].hist["legacy"].any(), "no legacy histogram was loaded"

    sites = sorted(set(fast.site))
    index = SiteIndex(sites, sites, ["ha-noi"] * len(sites), sites)
    facts = SiteFacts(NOW, np.full(len(sites), NOW - 10), NOW - 7 * 86400)
    for got, want in zip(Evaluator(config, fast).evaluate(index, facts),
                         Evaluator(config, reference).evaluate(index, facts), strict=True):
        for part in ("status", "value", "coverage", "why", "row", "low", "high"):
            np.testing.assert_array_equal(getattr(got, part), getattr(want, part), err_msg=got.criterion.id)
    assert {int(s) for o in Evaluator(config, fast).evaluate(index, facts) for s in o.status} == {
        MET, FAILED, UNKNOWN}, "the evidence is not varied enough"


def test_a_checkpoint_restores_the_same_matrix_in_both_formats(tmp_path: Path) -> None:
    config, specs = _specs()
    saved = EvidenceMatrix(H, config.max_window, specs)
    for batch in _batches(4):
        saved.load([batch], NOW)
    checkpoint.save(saved, tmp_path / "cp", "stamp", {"bucket": NOW // H * H})
    assert (tmp_path / "cp").read_bytes()[:len(checkpoint.MAGIC)] == checkpoint.MAGIC
    legacy = tmp_path / "cp.npz"  # what earlier versions wrote: the same arrays in an .npz
    arrays = _npz_arrays(saved)
    meta = {"stamp": "stamp", "extra": {"bucket": 1.0}, "site": saved.site, "check": saved.check,
            "probe": saved.probe, "labels": saved.raw_labels,
            "used": {key: [s.used, s.hist_used] for key, s in saved.keys.items()}}
    with open(legacy, "wb") as f:
        np.savez(f, meta=np.array(json.dumps(meta)), **arrays)
    for path in (tmp_path / "cp", legacy):
        restored = EvidenceMatrix(H, config.max_window, specs)
        assert checkpoint.load(restored, path, "stamp") is not None
        _assert_same(restored, saved)
        more = _batches(5)[0]  # and it keeps loading (the restored arrays grow and are written)
        copy = EvidenceMatrix(H, config.max_window, specs)
        for batch in _batches(4):
            copy.load([batch], NOW)
        assert restored.load([more], NOW + 60) == copy.load([more], NOW + 60)
        _assert_same(restored, copy)
    assert checkpoint.load(EvidenceMatrix(H, config.max_window, specs), tmp_path / "cp", "other") is None
    (tmp_path / "cp").write_bytes((tmp_path / "cp").read_bytes()[:-100])  # truncated: a full read instead
    assert checkpoint.load(EvidenceMatrix(H, config.max_window, specs), tmp_path / "cp", "stamp") is None


def _npz_arrays(m: EvidenceMatrix) -> dict[str, np.ndarray]:
    """The names the .npz checkpoint used (``keyN/...``, by the key's position)."""
    out = {f"base/{k}": v[:m.rows] for k, v in m.cols.arrays.items()}
    out.update({f"latest/{k}": v[:m.rows] for k, v in m.latest.arrays.items()})
    for n, store in enumerate(m.keys.values()):
        out[f"key{n}/index"] = store.index[:m.rows]
        out.update({f"key{n}/ring/{k}": v[:store.used] for k, v in store.ring.arrays.items()})
        out.update({f"key{n}/newest/{k}": v[:store.used] for k, v in store.newest.arrays.items()})
        out[f"key{n}/hist_index"] = store.hist_index[:store.used]
        out.update({f"key{n}/hist/{k}": v[:store.hist_used] for k, v in store.hist.arrays.items()})
    return out
