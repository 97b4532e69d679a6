"""``commune-collector`` as a user runs it: config checks, inventory, tokens, --help everywhere."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sqlite3
import subprocess
import unicodedata
from pathlib import Path

import pytest

from commune_collector.generate import COMMUNES_PER_PROVINCE, generate_sites, scaled_counts, slugify
from commune_collector.provinces import provinces
from commune_collector.settings import load_settings
from commune_common.yamlconf import ConfigError
from testsupport.collector import CLI

ROOT = Path(__file__).resolve().parent.parent
TESTDATA = ROOT / "tests" / "testdata" / "collector"
HELP = [[], ["serve"], ["check-config"], ["migrate"], ["aggregate"], ["sites"], ["sites", "import"], ["sites", "list"],
        ["sites", "generate"], ["token"], ["token", "issue"], ["token", "revoke"], ["token", "list"]]


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "collector.yaml"
    path.write_text(f"data_dir: {tmp_path / 'data'}\n")
    return path


@pytest.mark.parametrize("args", HELP, ids=lambda a: " ".join(a) or "top")
def test_every_subcommand_has_help(args: list[str]) -> None:
    result = run(*args, "--help")
    assert result.returncode == 0, result.stderr
    assert "usage: commune-collector" in result.stdout


def test_the_shipped_config_loads() -> None:
    settings = load_settings(ROOT / "config" / "collector.yaml")
    assert settings.listen == "127.0.0.1:8470" and settings.database.dsn is None
    assert settings.retention.evidence == 8 * 86400 and settings.clock.warn_offset == 30
    assert run("check-config", str(ROOT / "config" / "collector.yaml")).returncode == 0


@pytest.mark.parametrize("path", sorted(TESTDATA.glob("invalid-*.yaml")), ids=lambda p: p.name)
def test_each_invalid_config_gets_its_message(path: Path) -> None:
    expected = path.read_text().splitlines()[0].removeprefix("# expect: ")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert [str(i).replace(str(path), path.name) for i in caught.value.issues] == [expected]
    result = run("check-config", str(path))
    assert result.returncode == 1 and expected in result.stderr.replace(str(path), path.name)
    assert "s3cret" not in result.stderr  # a DSN's password is never echoed


def test_generated_inventory_is_realistic_and_deterministic(tmp_path: Path) -> None:
    first = run("sites", "generate", "--seed", "5")
    second = run("sites", "generate", "--seed", "5")
    assert first.returncode == 0 and first.stdout == second.stdout
    assert run("sites", "generate", "--seed", "6").stdout != first.stdout
    rows = list(csv.DictReader(io.StringIO(first.stdout)))
    assert len(rows) == 3321 == sum(COMMUNES_PER_PROVINCE.values())
    assert len({r["id"] for r in rows}) == 3321
    per_province = {slug: sum(1 for r in rows if r["province"] == slug) for slug in provinces()}
    assert per_province == COMMUNES_PER_PROVINCE and len(per_province) == 34
    communes = [r["commune"] for r in rows]
    assert all(c.startswith(("Xã ", "Phường ")) for c in communes)
    assert sum(1 for c in communes if not c.isascii()) > 3000  # diacritics, in NFC
    assert all(unicodedata.is_normalized("NFC", c) for c in communes)
    assert all(r["id"] == f"{r['province']}-{slugify(r['commune'].split(' ', 1)[1])}" or
               r["id"].rsplit("-", 1)[1].isdigit() for r in rows)


def test_generator_scales_keeping_each_province_share() -> None:
    sites = generate_sites(10_000, seed=1)
    assert len(sites) == len({s.id for s in sites}) == 10_000
    counts = scaled_counts(10_000)
    assert sum(counts.values()) == 10_000 and counts["ho-chi-minh"] > counts["lai-chau"] * 4


def test_import_is_idempotent_shows_progress_and_keeps_diacritics(tmp_path: Path, config: Path) -> None:
    inventory = tmp_path / "sites.csv"
    assert run("sites", "generate", "--count", "2000", "-o", str(inventory)).returncode == 0
    first = run("sites", "import", str(inventory), "--config", str(config))
    assert first.returncode == 0, first.stderr
    assert "stored 2000/2000" in first.stderr
    assert "2000 new, 0 updated, 0 unchanged" in first.stdout
    again = run("sites", "import", str(inventory), "--config", str(config))
    assert "0 new, 0 updated, 2000 unchanged" in again.stdout
    listed = run("sites", "list", "--province", "hue", "--json", "--limit", "1000", "--config", str(config))
    data = json.loads(listed.stdout)
    expected = [s for s in generate_sites(2000) if s.province == "hue"]
    assert data["total"] == len(expected)
    assert [(s["id"], s["commune"]) for s in data["items"]] == [(s.id, s.commune) for s in expected]
    assert run("sites", "list", "--province", "atlantis", "--config", str(config)).returncode == 2


def test_yaml_inventory_imports_too(tmp_path: Path, config: Path) -> None:
    inventory = tmp_path / "sites.yaml"
    assert run("sites", "generate", "--count", "40", "-o", str(inventory)).returncode == 0
    assert inventory.read_text(encoding="utf-8").startswith("sites:")
    result = run("sites", "import", str(inventory), "--config", str(config))
    assert "40 new" in result.stdout, result.stderr
    assert run("sites", "import", str(ROOT / "config" / "inventory.example.csv"), "--config",
               str(config)).returncode == 0


def test_a_bad_csv_is_refused_whole_with_every_error_by_line(config: Path) -> None:
    path = TESTDATA / "inventory-invalid.csv"
    result = run("sites", "import", str(path), "--config", str(config))
    assert result.returncode == 1
    errors = [line.removeprefix(f"error: {path}") for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        ":3 id: 'Bad Id' must be lower-case letters, digits and dashes, at most 63 (e.g. ha-noi-ba-dinh)",
        ":4 province: 'hue-city' is not a province slug (e.g. ha-noi, ho-chi-minh, dak-lak; "
        "the 34 are in collector/data/provinces.csv)",
        ":5 id: 'ha-noi-ba-dinh' is already the id on line 2",
        ":6 name: must not be empty",
        ":6 devices: 'Router X' is not a name: use lower-case letters, digits, '-', '_' or '.' (e.g. vc-terminal)"]
    listed = run("sites", "list", "--json", "--config", str(config))
    assert json.loads(listed.stdout)["total"] == 0  # nothing stored half-way


def test_a_bad_yaml_inventory_names_file_line_and_field(config: Path) -> None:
    path = TESTDATA / "inventory-invalid.yaml"
    result = run("sites", "import", str(path), "--config", str(config))
    assert result.returncode == 1
    assert f"{path}:8 sites[1].province: 'hue-city' is not a province slug" in result.stderr
    assert f"{path}:10 sites[1].color: unknown key" in result.stderr


def test_csv_header_problems_are_named(tmp_path: Path, config: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("id,name,commune,colour\nx,y,z,w\n")
    result = run("sites", "import", str(path), "--config", str(config))
    assert result.returncode == 1
    assert f"{path}:1 province: required column is missing" in result.stderr
    assert f"{path}:1 colour: unknown column" in result.stderr
    (tmp_path / "bad.txt").write_text("x")
    assert "name the file .csv, .yaml or .yml" in run("sites", "import", str(tmp_path / "bad.txt")).stderr


def test_tokens_are_shown_once_stored_hashed_and_revocable(tmp_path: Path, config: Path) -> None:
    run("sites", "import", str(ROOT / "config" / "inventory.example.csv"), "--config", str(config))
    issued = run("token", "issue", "hue-thuan-hoa", "--config", str(config))
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip()
    prefix, token_id, secret = token.split("_", 2)
    assert prefix == "cm" and len(token_id) == 12 and len(secret) == 43
    assert "shown only once" in issued.stderr
    db = sqlite3.connect(tmp_path / "data" / "collector.db")
    (stored,) = db.execute("SELECT hash FROM tokens WHERE id = ?", (token_id,)).fetchone()
    db.close()
    assert stored == hashlib.sha256(secret.encode()).hexdigest() and secret not in stored
    listed = run("token", "list", "--config", str(config)).stdout
    assert token_id in listed and secret not in listed and "live" in listed
    assert run("token", "revoke", "hue-thuan-hoa", "--config", str(config)).returncode == 0
    assert "revoked" in run("token", "list", "--config", str(config)).stdout
    assert run("token", "revoke", token_id, "--config", str(config)).returncode == 1  # nothing live left
    unknown = run("token", "issue", "no-such-site", "--config", str(config))
    assert unknown.returncode == 1 and "unknown site 'no-such-site'" in unknown.stderr


def test_aggregate_once_folds_the_journal(tmp_path: Path, config: Path) -> None:
    from commune_collector.intake import read_clock, to_item
    from commune_collector.settings import ClockSettings
    from commune_collector.store.sqlite import SQLiteStore
    from testsupport.collector import make_report

    run("sites", "import", str(ROOT / "config" / "inventory.example.csv"), "--config", str(config))
    store = SQLiteStore(tmp_path / "data" / "collector.db")
    try:
        for seq in (1, 2, 3):
            report = make_report("hue-thuan-hoa", seq, n=4)
            store.ingest(to_item(report, report.sent_at, read_clock(report.sent_at, report.sent_at, ClockSettings())))
    finally:
        store.close()
    result = run("aggregate", "--once", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert "folded 3 report(s)" in result.stdout
    assert "folded 0 report(s)" in run("aggregate", "--once", "--config", str(config)).stdout


def test_settled_heap_is_frozen_and_collected_young_less_often() -> None:
    """``serve`` and the children settle their heap once started (in a fresh interpreter: not this one)."""
    import sys
    code = ("import gc; from common.heap import settle_heap, YOUNG_THRESHOLD; before = gc.get_threshold()[0]; "
            "settle_heap(); print(before, gc.get_threshold()[0] == YOUNG_THRESHOLD, gc.get_freeze_count() > 1000)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parents[1], check=True).stdout.split()
    assert out == ["700", "True", "True"]


def test_the_server_keeps_idle_connections_longer_than_agents_do(tmp_path: Path) -> None:
    """uvicorn closes an idle connection after 5 s by default: every agent push (30 s) would then be a new
    TCP and TLS handshake. ``keep_alive`` reaches the server's settings, with TLS and the listen address."""
    from commune_collector.cli.serve import uvicorn_config
    from testsupport.collector import self_signed_cert

    cert, key = self_signed_cert(tmp_path)
    path = tmp_path / "collector.yaml"
    path.write_text(f"listen: 127.0.0.1:8499\nkeep_alive: 2m\ntls: {{cert_file: {cert}, key_file: {key}}}\n")
    config = uvicorn_config(object(), load_settings(path))
    assert (config.host, config.port, config.timeout_keep_alive) == ("127.0.0.1", 8499, 120)
    assert (config.ssl_certfile, config.ssl_keyfile, config.access_log) == (str(cert), str(key), False)
    (tmp_path / "default.yaml").write_text("listen: 127.0.0.1:8499\n")
    assert uvicorn_config(object(), load_settings(tmp_path / "default.yaml")).timeout_keep_alive == 75


def test_the_upstream_column_is_optional_checked_and_kept(tmp_path: Path, config: Path) -> None:
    from commune_collector.inventory import parse_csv, sites_to_csv
    text = ("id,name,province,commune,links,devices,power,upstream\n"
            "hue-a,Xã A,hue,Xã A,fiber,,ups,agg-hue-1\n"
            "hue-b,Xã B,hue,Xã B,fiber,,ups,\n"
            "hue-c,Xã C,hue,Xã C,fiber,,ups,Agg Huế\n")
    path = tmp_path / "sites.csv"
    path.write_text(text, encoding="utf-8")
    result = run("sites", "import", str(path), "--config", str(config))
    assert result.returncode == 1 and f"{path}:4 upstream: 'Agg Huế' is not a name" in result.stderr
    sites = parse_csv(text.rsplit("hue-c", 1)[0].rstrip("\n") + "\n")
    assert [s.upstream for s in sites] == ["agg-hue-1", None]
    assert parse_csv(sites_to_csv(sites)) == sites, "an export imports back the same"
    path.write_text(sites_to_csv(sites), encoding="utf-8")
    assert run("sites", "import", str(path), "--config", str(config)).returncode == 0
    listed = json.loads(run("sites", "list", "--json", "--config", str(config)).stdout)
    assert {s["id"]: s.get("upstream") for s in listed["items"]} == {"hue-a": "agg-hue-1", "hue-b": None}
