-- Operators' credentials (collector.access). See docs/architecture.md, "Access".
CREATE TABLE operator_tokens (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,                -- who holds it: a person, or a system such as prometheus
    role        TEXT NOT NULL,                -- national | province | auditor | metrics
    province    TEXT,                         -- the province slug of a province role, else NULL
    hash        TEXT NOT NULL,                -- sha256 of the secret; the secret is never stored
    created_at  REAL NOT NULL,
    expires_at  REAL,                         -- NULL: never (only when asked for explicitly)
    revoked_at  REAL
);
CREATE INDEX operator_tokens_by_name ON operator_tokens (name);
