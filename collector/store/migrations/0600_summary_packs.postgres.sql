-- Hour packs (collector/judge/packs.py): a closed hour of one check across every site, packed as arrays by
-- the judge, so a cold pass reads a few hundred packs instead of a day of summaries row by row.
CREATE TABLE summary_packs (
    bucket_start DOUBLE PRECISION NOT NULL,
    check_id     TEXT NOT NULL,
    entries      INTEGER NOT NULL,
    value_keys   TEXT NOT NULL,
    body         BYTEA NOT NULL,
    written_at   DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (bucket_start, check_id)
);
-- packed arrays do not compress: stored out of line as they are, read without a decompression
ALTER TABLE summary_packs ALTER COLUMN body SET STORAGE EXTERNAL;

-- A pack is current or absent: a write to an hour the judge has moved past deletes that hour's pack of
-- the check, in the writer's transaction, with the backfill log entry.
CREATE OR REPLACE FUNCTION judge_log_backfill() RETURNS trigger AS $$
BEGIN
    IF NEW.bucket_start < (SELECT read_from FROM judge_cursor WHERE id = 1) THEN
        INSERT INTO judge_backfill (site, check_id, bucket_start) VALUES (NEW.site, NEW.check_id, NEW.bucket_start);
        DELETE FROM summary_packs WHERE bucket_start = NEW.bucket_start AND check_id = NEW.check_id;
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;
