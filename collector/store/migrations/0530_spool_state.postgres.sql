-- (PostgreSQL) Each site's agent spool as its last report said (Report.spool, newer agents only; NULL when it did not say):
-- reports not yet acknowledged, the oldest one's age, and what the agent dropped since it started.
ALTER TABLE site_state ADD COLUMN spool_reports BIGINT;
ALTER TABLE site_state ADD COLUMN spool_oldest_age_s DOUBLE PRECISION;
ALTER TABLE site_state ADD COLUMN spool_dropped_reports BIGINT;
ALTER TABLE site_state ADD COLUMN spool_dropped_results BIGINT;
