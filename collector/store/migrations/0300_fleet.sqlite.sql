-- Fleet management (collector/fleet): enrollment tokens, who enrolled which site, each agent's config state.

CREATE TABLE enroll_tokens (
    id              TEXT PRIMARY KEY,
    hash            TEXT NOT NULL,                -- sha256 of the secret; the secret is never stored
    province        TEXT,                         -- scope: every site of this province ...
    sites           TEXT,                         -- ... or these site ids, comma-separated
    created_at      REAL NOT NULL,
    expires_at      REAL NOT NULL,
    max_uses        INTEGER NOT NULL,
    uses            INTEGER NOT NULL DEFAULT 0,
    allow_reenroll  INTEGER NOT NULL DEFAULT 0,
    revoked_at      REAL,
    note            TEXT NOT NULL DEFAULT ''
);

CREATE TABLE enrollments (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    site            TEXT NOT NULL,
    enroll_token    TEXT NOT NULL,                -- enroll_tokens.id
    site_token      TEXT NOT NULL,                -- tokens.id issued by this enrollment
    instance        TEXT NOT NULL,                -- the agent's instance id when it enrolled
    enrolled_at     REAL NOT NULL,
    reenrolled      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX enrollments_by_site ON enrollments (site, enrolled_at);

CREATE TABLE fleet_reenroll (
    site            TEXT PRIMARY KEY,             -- the operator allowed one re-enrollment of this site
    allowed_at      REAL NOT NULL
);

CREATE TABLE fleet_agents (
    site            TEXT PRIMARY KEY,
    instance        TEXT NOT NULL,
    config_version  TEXT NOT NULL DEFAULT '',
    config_error    TEXT NOT NULL DEFAULT '',
    updated_at      REAL NOT NULL,
    other_instance  TEXT NOT NULL DEFAULT '',     -- another instance pushing as this site ...
    other_seen_at   REAL              -- ... last seen then (two agents, one site)
);
