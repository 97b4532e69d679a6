-- Operators' credentials (collector.access). See docs/architecture.md, "Access".
CREATE TABLE operator_tokens (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL,
    province    TEXT,
    hash        TEXT NOT NULL,
    created_at  DOUBLE PRECISION NOT NULL,
    expires_at  DOUBLE PRECISION,
    revoked_at  DOUBLE PRECISION
);
CREATE INDEX operator_tokens_by_name ON operator_tokens (name);
