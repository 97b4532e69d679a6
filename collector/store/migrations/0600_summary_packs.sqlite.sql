-- Hour packs (collector/judge/packs.py): a closed hour of one check across every site, packed as arrays by
-- the judge, so a cold pass reads a few hundred packs instead of a day of summaries row by row.
CREATE TABLE summary_packs (
    bucket_start REAL NOT NULL,
    check_id     TEXT NOT NULL,
    entries      INTEGER NOT NULL,     -- sites in the pack
    value_keys   TEXT NOT NULL,        -- JSON {value key: with its sketch}: what the pack holds of the values
    body         BLOB NOT NULL,        -- msgpack of arrays, see judge/packs.py
    written_at   REAL NOT NULL,
    PRIMARY KEY (bucket_start, check_id)
);

-- A pack is current or absent: a write to an hour the judge has moved past (spooled evidence folded late)
-- deletes that hour's pack of the check, in the writer's transaction, with the backfill log entry.
DROP TRIGGER judge_backfill_on_insert;
DROP TRIGGER judge_backfill_on_update;

CREATE TRIGGER judge_backfill_on_insert AFTER INSERT ON summaries
WHEN NEW.bucket_start < (SELECT read_from FROM judge_cursor WHERE id = 1)
BEGIN
    INSERT INTO judge_backfill (site, check_id, bucket_start) VALUES (NEW.site, NEW.check_id, NEW.bucket_start);
    DELETE FROM summary_packs WHERE bucket_start = NEW.bucket_start AND check_id = NEW.check_id;
END;

CREATE TRIGGER judge_backfill_on_update AFTER UPDATE ON summaries
WHEN NEW.bucket_start < (SELECT read_from FROM judge_cursor WHERE id = 1)
BEGIN
    INSERT INTO judge_backfill (site, check_id, bucket_start) VALUES (NEW.site, NEW.check_id, NEW.bucket_start);
    DELETE FROM summary_packs WHERE bucket_start = NEW.bucket_start AND check_id = NEW.check_id;
END;
