"""UPS cards that do not estimate their runtime on mains, judged with the default criteria.

Three vendors' UPS-MIB cards recorded in snmpsim-data report
upsEstimatedMinutesRemaining 0 (Phoenixtec, EastPower) or -1 (Huawei) while on
mains with a full battery: they estimate only on battery. The real agent probe
reads each recording (and variants switched onto battery), its rounds go
through the collector's API in the wire format, and the app's own judge judges
them with the shipped criteria (``ups-runtime``: min runtime over 1 h >= 15 min).
A reading that is not an estimate is kept out of the statistic and the reason
says so; on battery the value counts, 0 included. The Eaton card, which does
estimate on mains, is judged on its value.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from commune_agent.batcher import to_check_result
from commune_agent.checks import build_checks
from commune_agent.config import load_agent_config
from commune_agent.power.reading import runtime_estimate
from commune_agent.probes.ups_nut import UpsNutConfig
from commune_agent.runner import run_check
from commune_agent.snmp import oids
from commune_collector.aggregator import fold_journal
from commune_collector.auth import new_token
from commune_collector.judge.criteria import DEFAULT_CRITERIA
from commune_collector.runtime.app import create_app
from commune_collector.settings import CollectorSettings
from commune_collector.sites import Site
from commune_common.wire import CheckResult, Report, encode_report
from testsupport.access import operator_headers
from testsupport.devices import INTEGER, context, run_probe
from testsupport.peers.nut import NutPeer
from testsupport.peers.snmpsim import SnmpsimPeer, prepare_devices, snmprec_variant

RECORDINGS = {  # site -> snmpsim-data recording of a UPS-MIB card
    "eaton": "UPS/eaton-93e-80",
    "phoenixtec": "UPS/phoenixtec-power",
    "eastpower": "UPS/eastpower-istars-swv053",
    "huawei": "UPS/huawei-gse200m",
}
ON_BATTERY = {  # site -> (recording, overrides): the same cards during a power cut
    "phoenixtec-cut": ("phoenixtec", {oids.UPS_OUTPUT_SOURCE: (INTEGER, 5), oids.UPS_SECONDS_ON_BATTERY: (INTEGER, 1500),
                                      oids.UPS_MINUTES_REMAINING: (INTEGER, 0), oids.UPS_CHARGE_REMAINING: (INTEGER, 2),
                                      oids.UPS_BATTERY_STATUS: (INTEGER, 4)}),
    "eastpower-cut": ("eastpower", {oids.UPS_OUTPUT_SOURCE: (INTEGER, 5), oids.UPS_SECONDS_ON_BATTERY: (INTEGER, 120),
                                    oids.UPS_MINUTES_REMAINING: (INTEGER, 25), oids.UPS_CHARGE_REMAINING: (INTEGER, 90)}),
}
ROUNDS = 120  # one hour of 30 s rounds: the ups-runtime window, fully covered


@pytest.fixture(scope="module")
def ups_cards(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SnmpsimPeer]:
    tmp = tmp_path_factory.mktemp("ups")
    _, recorded = prepare_devices(RECORDINGS)
    devices: dict[str, str | Path] = dict(RECORDINGS)
    for site, (base, overrides) in ON_BATTERY.items():
        devices[site] = snmprec_variant(recorded[base].data_file, tmp / f"commune-test-{site}.snmprec", overrides)
    peer = SnmpsimPeer(devices=devices)
    peer.start()
    try:
        yield peer
    finally:
        peer.stop()


def recorded(peer: SnmpsimPeer, site: str) -> dict[str, int]:
    """The recording's INTEGER objects, read from the file (some recordings hold bytes that are not UTF-8)."""
    lines = peer.devices[site].data_file.read_text(errors="replace").splitlines()
    rows = (line.split("|", 2) for line in lines if line.count("|") >= 2 and not line.startswith("#"))
    return {oid: int(value) for oid, tag, value in rows if tag == "2"}


async def probe_round(peer: SnmpsimPeer, site: str, tmp_path: Path) -> CheckResult:
    """One round of the agent's real UPS check, built from an agent.yaml as the agent builds it."""
    config = tmp_path / f"agent-{site}.yaml"
    config.write_text(yaml.safe_dump({
        "site": {"id": site, "province": "ha-noi", "commune": "Phường Ba Đình"},
        "host": {"enabled": False},
        "power": [{"name": "ups", "source": "snmp", "host": "127.0.0.1",
                   "snmp": {"port": peer.port, "community": peer.community(site), "timeout": "2s"}}],
    }, allow_unicode=True))
    (check,) = build_checks(load_agent_config(config))
    shared: dict = {}
    try:
        result = await run_check(check, context(shared))
    finally:
        for resource in shared.values():
            resource.close()
    assert result.ok, result.reason
    return to_check_result(check, result)


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[TestClient]:
    settings = CollectorSettings.model_validate({
        "data_dir": str(tmp_path / "data"), "auth": {"cache_ttl": "0s"}, "aggregator": {"interval": "1h"},
        "judge": {"criteria_file": str(DEFAULT_CRITERIA), "interval": "1h", "process": False}})
    app = create_app(settings)
    with TestClient(app) as client:
        client.headers.update(operator_headers(app.state.collector.store))  # reads need an operator
        yield client


def push_hour(client: TestClient, site: str, one: CheckResult, now: float) -> None:
    """The round as the agent would have sent it every 30 s for the last hour (one report, wire format)."""
    state = client.app.state.collector
    token, record = new_token(site)
    state.store.upsert_sites([Site(site, f"Trung tâm {site}", "ha-noi", "Phường Ba Đình")])
    state.store.add_token(record)
    rounds = [CheckResult(check=one.check, probe=one.probe, ts=now - 30.0 * k, ok=True, duration_s=one.duration_s,
                          labels=one.labels, values=one.values) for k in range(ROUNDS)]
    report = Report(site=site, instance="i", seq=1, sent_at=time.time(), agent_version="t", results=rounds)
    response = client.post("/api/v1/reports", content=encode_report(report),
                           headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    assert response.status_code == 200, response.text


def judged(client: TestClient) -> dict[str, dict]:
    state = client.app.state.collector
    fold_journal(state.store)
    state.judge.run_pass()
    return {site: client.get(f"/api/v1/verdicts/{site}").json() for site in {*RECORDINGS, *ON_BATTERY}}


def criterion(verdict: dict, cid: str) -> dict:
    return next(c for c in verdict["criteria"] if c["id"] == cid)


async def test_cards_that_do_not_estimate_on_mains_are_not_judged_on_a_zero(ups_cards: SnmpsimPeer,
                                                                           collector: TestClient,
                                                                           tmp_path: Path) -> None:
    now = time.time()
    for site in (*RECORDINGS, *ON_BATTERY):
        push_hour(collector, site, await probe_round(ups_cards, site, tmp_path), now)
    verdicts = judged(collector)

    for site in ("phoenixtec", "eastpower", "huawei"):
        rec = recorded(ups_cards, site)
        assert rec[oids.UPS_OUTPUT_SOURCE] == 3 and rec[oids.UPS_MINUTES_REMAINING] <= 0  # on mains, no estimate
        v = verdicts[site]
        runtime = criterion(v, "ups-runtime")
        assert runtime["met"] is None and runtime["value"] is None, (site, runtime)
        assert "not estimated" in runtime["reason"], (site, runtime["reason"])
        assert criterion(v, "mains-power")["met"] is True
        assert v["items"]["power"] == "unknown"  # never failed on a reading the card did not make

    eaton = verdicts["eaton"]
    minutes = recorded(ups_cards, "eaton")[oids.UPS_MINUTES_REMAINING]
    assert criterion(eaton, "ups-runtime")["met"] is True
    assert criterion(eaton, "ups-runtime")["value"] == minutes * 60
    assert criterion(eaton, "mains-power")["met"] is True  # (completed only after the stable period)

    # on battery the card's value counts, a zero included
    cut = criterion(verdicts["phoenixtec-cut"], "ups-runtime")
    assert (cut["met"], cut["value"]) == (False, 0.0)
    assert "not estimated" not in cut["reason"]
    cut = criterion(verdicts["eastpower-cut"], "ups-runtime")
    assert (cut["met"], cut["value"]) == (True, 25 * 60)


async def test_an_hour_mostly_not_estimated_is_judged_on_its_estimates(ups_cards: SnmpsimPeer,
                                                                      collector: TestClient, tmp_path: Path) -> None:
    """50 min on mains (0: not estimated), then 10 min on battery (0: the battery is empty): it fails.

    Not-estimated rounds still cover the window, so the 20 battery rounds are judged, not set aside
    as too little evidence.
    """
    mains = await probe_round(ups_cards, "phoenixtec", tmp_path)
    cut = await probe_round(ups_cards, "phoenixtec-cut", tmp_path)
    site, now = "phoenixtec", time.time()
    rounds = [CheckResult(check=r.check, probe=r.probe, ts=now - 30.0 * k, ok=True, duration_s=r.duration_s,
                          labels=r.labels, values=r.values) for k, r in ((k, cut if k < 20 else mains)
                                                                         for k in range(ROUNDS))]
    token, record = new_token(site)
    state = collector.app.state.collector
    state.store.upsert_sites([Site(site, "Trung tâm", "ha-noi", "Phường Ba Đình")])
    state.store.add_token(record)
    report = Report(site=site, instance="i", seq=1, sent_at=time.time(), agent_version="t", results=rounds)
    response = collector.post("/api/v1/reports", content=encode_report(report),
                              headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    fold_journal(state.store)
    state.judge.run_pass()
    runtime = criterion(collector.get(f"/api/v1/verdicts/{site}").json(), "ups-runtime")
    assert (runtime["met"], runtime["value"]) == (False, 0.0)
    assert runtime["coverage"] > 0.5  # every answered round covers the window, estimate or not


@pytest.mark.parametrize(("seconds", "on_battery", "low", "charge", "expected"), [
    (0.0, False, False, 1.0, (None, False)),  # UPS-MIB cards in snmpsim-data, on mains at 100 %
    (0.0, False, None, None, (None, False)),  # nothing else known: still no estimate on mains
    (-60.0, False, False, None, (None, False)),  # Huawei: -1 minute, outside the MIB's range
    (-60.0, True, False, 0.5, (None, False)),  # negative is never an estimate, on battery either
    (0.0, True, True, 0.02, (0.0, True)),  # on battery a zero counts: the battery is empty
    (0.0, False, True, 0.1, (0.0, True)),  # on mains, low battery: really nothing left (recharging)
    (0.0, False, False, 0.0, (0.0, True)),  # on mains at 0 % charge: really nothing left
    (4800.0, False, False, 1.0, (4800.0, True)),  # a card that estimates on mains
    (None, False, False, 1.0, (None, None)),  # the source has no runtime object at all
])
def test_when_a_runtime_is_an_estimate(seconds: float | None, on_battery: bool, low: bool | None,
                                       charge: float | None, expected: tuple) -> None:
    assert runtime_estimate(seconds, on_battery, low, charge) == expected


async def test_nut_runtime_zero_on_line_is_not_an_estimate(nut_ups: NutPeer) -> None:
    """NUT battery.runtime through a real upsd: 0 while OL at full charge is not estimated; OB it counts."""
    config = UpsNutConfig(name="ups", source="nut", port=nut_ups.port, ups=nut_ups.ups_name)
    try:
        nut_ups.set_vars({"ups.status": "OL", "battery.charge": "100", "battery.runtime": "0"})
        result = await run_probe(config, context({}))
        assert result.ok, result.reason
        assert result.value("power_battery_runtime_seconds") is None
        assert result.value("power_battery_runtime_estimated") == 0
        nut_ups.set_vars({"ups.status": "OB DISCHRG LB", "battery.charge": "3", "battery.runtime": "0"})
        result = await run_probe(config, context({}))
        assert (result.value("power_battery_runtime_seconds"), result.value("power_battery_runtime_estimated")) == (0, 1)
    finally:
        nut_ups.reset()
