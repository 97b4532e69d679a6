-- The judge's tables (collector.judge, collector.store.verdicts). See docs/architecture.md, "Judge".

-- every site's verdict state, so a restart keeps stable clocks and regressions
CREATE TABLE judge_state (
    site            TEXT PRIMARY KEY,
    state           INTEGER NOT NULL,             -- 0 unknown, 1 not_completed, 2 completed
    since           REAL NOT NULL,
    candidate_since REAL,                         -- criteria holding since (the stable clock)
    last_definite   INTEGER NOT NULL,             -- last state other than unknown
    items           TEXT NOT NULL,                -- JSON {item: [state, since, candidate_since, last_definite]}
    updated_at      REAL NOT NULL
) WITHOUT ROWID;

-- verdicts over time: every change of a site's state; regressions flagged
CREATE TABLE judge_transitions (
    id          INTEGER PRIMARY KEY,
    site        TEXT NOT NULL,
    province    TEXT NOT NULL,
    at          REAL NOT NULL,
    from_state  TEXT NOT NULL,
    to_state    TEXT NOT NULL,
    regression  INTEGER NOT NULL,
    cause       TEXT NOT NULL,                    -- JSON list of criterion ids
    detail      TEXT NOT NULL
);
CREATE INDEX judge_transitions_by_at ON judge_transitions (at);
CREATE INDEX judge_transitions_by_site ON judge_transitions (site, at);

-- one row per day and province ('' = national) for the burn-up chart
CREATE TABLE judge_history (
    day           TEXT NOT NULL,
    province      TEXT NOT NULL,
    total         INTEGER NOT NULL,
    completed     INTEGER NOT NULL,
    not_completed INTEGER NOT NULL,
    unknown       INTEGER NOT NULL,
    items         TEXT NOT NULL,                  -- JSON per item: completed, done / provinces_done
    updated_at    REAL NOT NULL,
    PRIMARY KEY (day, province)
) WITHOUT ROWID;

-- Late evidence: the judge re-reads the bucket in progress every pass; a write
-- to an older bucket (spooled evidence folded hours later) is logged here so the
-- next pass re-reads exactly those buckets instead of a day of summaries.
CREATE TABLE judge_cursor (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    read_from REAL NOT NULL                        -- buckets older than this are logged when written
);
INSERT INTO judge_cursor (id, read_from) VALUES (1, -1);

CREATE TABLE judge_backfill (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,   -- never reused: the judge remembers the last id read
    site         TEXT NOT NULL,
    check_id     TEXT NOT NULL,
    bucket_start REAL NOT NULL
);

CREATE TRIGGER judge_backfill_on_insert AFTER INSERT ON summaries
WHEN NEW.bucket_start < (SELECT read_from FROM judge_cursor WHERE id = 1)
BEGIN
    INSERT INTO judge_backfill (site, check_id, bucket_start) VALUES (NEW.site, NEW.check_id, NEW.bucket_start);
END;

CREATE TRIGGER judge_backfill_on_update AFTER UPDATE ON summaries
WHEN NEW.bucket_start < (SELECT read_from FROM judge_cursor WHERE id = 1)
BEGIN
    INSERT INTO judge_backfill (site, check_id, bucket_start) VALUES (NEW.site, NEW.check_id, NEW.bucket_start);
END;
