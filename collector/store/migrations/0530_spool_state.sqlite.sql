-- Each site's agent spool as its last report said (Report.spool, newer agents only; NULL when it did not say):
-- reports not yet acknowledged, the oldest one's age, and what the agent dropped since it started.
ALTER TABLE site_state ADD COLUMN spool_reports INTEGER;
ALTER TABLE site_state ADD COLUMN spool_oldest_age_s REAL;
ALTER TABLE site_state ADD COLUMN spool_dropped_reports INTEGER;
ALTER TABLE site_state ADD COLUMN spool_dropped_results INTEGER;
