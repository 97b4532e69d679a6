-- The collector's first schema (SQLite). See docs/architecture.md, "Collector".
CREATE TABLE sites (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    province    TEXT NOT NULL,
    commune     TEXT NOT NULL,
    expected    TEXT NOT NULL DEFAULT '{}',   -- JSON: links, devices, power the site should have
    updated_at  REAL NOT NULL
);
CREATE INDEX sites_by_province ON sites (province, id);

CREATE TABLE tokens (
    id          TEXT PRIMARY KEY,
    site        TEXT NOT NULL,
    hash        TEXT NOT NULL,                -- sha256 of the secret; the secret is never stored
    created_at  REAL NOT NULL,
    revoked_at  REAL
);
CREATE INDEX tokens_by_site ON tokens (site);

CREATE TABLE site_state (
    site            TEXT PRIMARY KEY,
    instance        TEXT NOT NULL,
    agent_version   TEXT NOT NULL,
    last_seq        INTEGER NOT NULL,
    last_report_at  REAL NOT NULL,
    last_sent_at    REAL NOT NULL,
    clock_offset_s  REAL NOT NULL,
    clock_flagged   INTEGER NOT NULL DEFAULT 0
);

-- idempotency: the seqs stored per agent instance, as ranges [lo, hi] (a gap = a seq never stored)
CREATE TABLE report_ranges (
    site        TEXT NOT NULL,
    instance    TEXT NOT NULL,
    lo          INTEGER NOT NULL,
    hi          INTEGER NOT NULL,
    updated_at  REAL NOT NULL,
    PRIMARY KEY (site, instance, lo)
) WITHOUT ROWID;

-- accepted reports not yet folded into summaries (short-lived)
CREATE TABLE journal (
    id          INTEGER PRIMARY KEY,
    site        TEXT NOT NULL,
    received_at REAL NOT NULL,
    shift_s     REAL NOT NULL,
    body        BLOB NOT NULL
);

CREATE TABLE latest (
    site        TEXT NOT NULL,
    check_id    TEXT NOT NULL,
    probe       TEXT NOT NULL,
    ts          REAL NOT NULL,
    ok          INTEGER NOT NULL,
    duration_s  REAL NOT NULL,
    reason      TEXT NOT NULL,
    labels      TEXT NOT NULL,
    vals        TEXT NOT NULL,
    PRIMARY KEY (site, check_id)
) WITHOUT ROWID;

CREATE TABLE summaries (
    bucket_start REAL NOT NULL,
    site         TEXT NOT NULL,
    check_id     TEXT NOT NULL,
    probe        TEXT NOT NULL,
    labels       TEXT NOT NULL,
    rounds_ok    INTEGER NOT NULL,
    rounds_fail  INTEGER NOT NULL,
    first_ts     REAL NOT NULL,
    last_ts      REAL NOT NULL,
    last_reason  TEXT NOT NULL,
    values_json  TEXT NOT NULL,
    PRIMARY KEY (bucket_start, site, check_id)
) WITHOUT ROWID;

CREATE TABLE aggregator_runs (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    last_run_at REAL NOT NULL
);
