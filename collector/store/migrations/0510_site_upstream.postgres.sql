-- The upstream a commune shares with others (an aggregation router, one backbone link), from the
-- inventory's optional upstream column: the judge groups upstream outages by it, maintenance can cover it.
ALTER TABLE sites ADD COLUMN upstream TEXT;
