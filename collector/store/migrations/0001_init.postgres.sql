-- The collector's first schema (PostgreSQL). See docs/architecture.md, "Collector".
CREATE TABLE sites (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    province    TEXT NOT NULL,
    commune     TEXT NOT NULL,
    expected    TEXT NOT NULL DEFAULT '{}',   -- JSON: links, devices, power the site should have
    updated_at  DOUBLE PRECISION NOT NULL
);
CREATE INDEX sites_by_province ON sites (province, id);

CREATE TABLE tokens (
    id          TEXT PRIMARY KEY,
    site        TEXT NOT NULL,
    hash        TEXT NOT NULL,                -- sha256 of the secret; the secret is never stored
    created_at  DOUBLE PRECISION NOT NULL,
    revoked_at  DOUBLE PRECISION
);
CREATE INDEX tokens_by_site ON tokens (site);

CREATE TABLE site_state (
    site            TEXT PRIMARY KEY,
    instance        TEXT NOT NULL,
    agent_version   TEXT NOT NULL,
    last_seq        BIGINT NOT NULL,
    last_report_at  DOUBLE PRECISION NOT NULL,
    last_sent_at    DOUBLE PRECISION NOT NULL,
    clock_offset_s  DOUBLE PRECISION NOT NULL,
    clock_flagged   BOOLEAN NOT NULL DEFAULT FALSE
);

-- idempotency: the seqs stored per agent instance, as ranges [lo, hi] (a gap = a seq never stored)
CREATE TABLE report_ranges (
    site        TEXT NOT NULL,
    instance    TEXT NOT NULL,
    lo          BIGINT NOT NULL,
    hi          BIGINT NOT NULL,
    updated_at  DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (site, instance, lo)
);

-- accepted reports not yet folded into summaries (short-lived)
CREATE TABLE journal (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site        TEXT NOT NULL,
    received_at DOUBLE PRECISION NOT NULL,
    shift_s     DOUBLE PRECISION NOT NULL,
    body        BYTEA NOT NULL
);

CREATE TABLE latest (
    site        TEXT NOT NULL,
    check_id    TEXT NOT NULL,
    probe       TEXT NOT NULL,
    ts          DOUBLE PRECISION NOT NULL,
    ok          BOOLEAN NOT NULL,
    duration_s  DOUBLE PRECISION NOT NULL,
    reason      TEXT NOT NULL,
    labels      TEXT NOT NULL,
    vals        TEXT NOT NULL,
    PRIMARY KEY (site, check_id)
);

CREATE TABLE summaries (
    bucket_start DOUBLE PRECISION NOT NULL,
    site         TEXT NOT NULL,
    check_id     TEXT NOT NULL,
    probe        TEXT NOT NULL,
    labels       TEXT NOT NULL,
    rounds_ok    BIGINT NOT NULL,
    rounds_fail  BIGINT NOT NULL,
    first_ts     DOUBLE PRECISION NOT NULL,
    last_ts      DOUBLE PRECISION NOT NULL,
    last_reason  TEXT NOT NULL,
    values_json  TEXT NOT NULL,
    PRIMARY KEY (bucket_start, site, check_id)
);

CREATE TABLE aggregator_runs (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    last_run_at DOUBLE PRECISION NOT NULL
);
