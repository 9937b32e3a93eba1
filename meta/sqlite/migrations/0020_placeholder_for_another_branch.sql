-- PLACEHOLDER (branch i16fix): migration number 20 belongs to another
-- branch; this no-op only keeps the numbers without a gap on this branch.
-- Delete this file when merging that branch's 0020 (two files numbered 20
-- are refused at every open, so the merge cannot miss it).
SELECT 1;
