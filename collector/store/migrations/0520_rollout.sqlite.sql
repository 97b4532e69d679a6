-- Staged rollouts of the agent profile (collector/fleet/rollout*.py). See docs/architecture.md, "Staged rollout".
-- A rollout is never deleted: its state moves running -> halted -> promoted | rolled_back, each step in rollout_events.
CREATE TABLE rollouts (
    id              TEXT PRIMARY KEY,               -- ro-xxxxxxxx
    state           TEXT NOT NULL,                  -- running | halted | promoted | rolled_back
    base_profile    TEXT NOT NULL,                  -- the profile served before (the old version), its text
    base_hash       TEXT NOT NULL,                  -- sha256 of base_profile
    candidate       TEXT NOT NULL,                  -- the new profile, its text
    candidate_name  TEXT NOT NULL,                  -- the file it was read from (error messages)
    percent         REAL NOT NULL,                  -- the share of touched sites served the candidate
    provinces       TEXT NOT NULL DEFAULT '',       -- comma-separated slugs; '' = every province
    note            TEXT NOT NULL DEFAULT '',
    started_by      TEXT NOT NULL,
    started_at      REAL NOT NULL,
    ended_at        REAL,                           -- promoted or rolled back
    halt_reason     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX rollouts_by_start ON rollouts (started_at);

-- every site the candidate changes: its old and new config version, whether it is a canary, and the
-- check results its reports carried since the rollout started, by the version the agent had applied
CREATE TABLE rollout_sites (
    rollout         TEXT NOT NULL,
    site            TEXT NOT NULL,
    province        TEXT NOT NULL,
    old_version     TEXT NOT NULL,
    new_version     TEXT NOT NULL,
    canary          INTEGER NOT NULL DEFAULT 0,
    results_old     INTEGER NOT NULL DEFAULT 0,
    failed_old      INTEGER NOT NULL DEFAULT 0,
    results_new     INTEGER NOT NULL DEFAULT 0,
    failed_new      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (rollout, site)
);

CREATE TABLE rollout_events (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    rollout         TEXT NOT NULL,
    at              REAL NOT NULL,
    actor           TEXT NOT NULL,                  -- the operator, or 'collector' when it halted by itself
    action          TEXT NOT NULL,                  -- started | widened | halted | promoted | rolled_back
    detail          TEXT NOT NULL DEFAULT ''        -- why (the halt rule's figures), the new share
);
CREATE INDEX rollout_events_by_rollout ON rollout_events (rollout, at);
