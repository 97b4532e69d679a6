-- Maintenance windows (collector.maintenance). See docs/architecture.md, "Maintenance windows".
-- A row is never deleted: cancelling sets cancelled_at, so history keeps what was declared and covered.
CREATE TABLE maintenance_windows (
    id            TEXT PRIMARY KEY,
    scope         TEXT NOT NULL,              -- sites | province | group
    targets       TEXT NOT NULL,              -- JSON list: what was named
    sites         TEXT NOT NULL,              -- JSON list: the site ids covered, resolved when declared
    provinces     TEXT NOT NULL,              -- JSON list: their provinces (who may see and cancel it)
    starts_at     REAL NOT NULL,
    ends_at       REAL NOT NULL,                -- the end of the first occurrence
    every         TEXT,                       -- day | week | NULL (once)
    until         REAL,                         -- a recurring window's occurrences start before this
    reason        TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    created_at    REAL NOT NULL,
    cancelled_at  REAL,
    cancelled_by  TEXT,
    cancel_note   TEXT                        -- why it was cancelled (work finished early, postponed)
);
CREATE INDEX maintenance_windows_by_start ON maintenance_windows (starts_at);
