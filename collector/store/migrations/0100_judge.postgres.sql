-- The judge's tables (collector.judge, collector.store.verdicts). See docs/architecture.md, "Judge".

CREATE TABLE judge_state (
    site            TEXT PRIMARY KEY,
    state           SMALLINT NOT NULL,
    since           DOUBLE PRECISION NOT NULL,
    candidate_since DOUBLE PRECISION,
    last_definite   SMALLINT NOT NULL,
    items           TEXT NOT NULL,
    updated_at      DOUBLE PRECISION NOT NULL
);

CREATE TABLE judge_transitions (
    id          BIGSERIAL PRIMARY KEY,
    site        TEXT NOT NULL,
    province    TEXT NOT NULL,
    at          DOUBLE PRECISION NOT NULL,
    from_state  TEXT NOT NULL,
    to_state    TEXT NOT NULL,
    regression  SMALLINT NOT NULL,
    cause       TEXT NOT NULL,
    detail      TEXT NOT NULL
);
CREATE INDEX judge_transitions_by_at ON judge_transitions (at);
CREATE INDEX judge_transitions_by_site ON judge_transitions (site, at);

CREATE TABLE judge_history (
    day           TEXT NOT NULL,
    province      TEXT NOT NULL,
    total         INTEGER NOT NULL,
    completed     INTEGER NOT NULL,
    not_completed INTEGER NOT NULL,
    unknown       INTEGER NOT NULL,
    items         TEXT NOT NULL,
    updated_at    DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (day, province)
);

CREATE TABLE judge_cursor (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    read_from DOUBLE PRECISION NOT NULL
);
INSERT INTO judge_cursor (id, read_from) VALUES (1, -1);

CREATE TABLE judge_backfill (
    id           BIGSERIAL PRIMARY KEY,
    site         TEXT NOT NULL,
    check_id     TEXT NOT NULL,
    bucket_start DOUBLE PRECISION NOT NULL
);

CREATE FUNCTION judge_log_backfill() RETURNS trigger AS $$
BEGIN
    IF NEW.bucket_start < (SELECT read_from FROM judge_cursor WHERE id = 1) THEN
        INSERT INTO judge_backfill (site, check_id, bucket_start) VALUES (NEW.site, NEW.check_id, NEW.bucket_start);
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER judge_backfill_log AFTER INSERT OR UPDATE ON summaries
FOR EACH ROW EXECUTE FUNCTION judge_log_backfill();
