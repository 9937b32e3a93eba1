-- PLACEHOLDER (branch i16fix): migration number 14 belongs to another
-- branch; this no-op only keeps the numbers without a gap on this branch.
-- Delete this file when merging that branch's 0014 (two files numbered 14
-- are refused at every open, so the merge cannot miss it).
SELECT 1;
