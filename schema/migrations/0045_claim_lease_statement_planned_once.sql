-- 0045_claim_lease_statement_planned_once.sql
-- claim_outbox_batch runs its statements on plans made once per connection (issue 9).
--
-- PL/pgSQL plans a statement with parameters afresh for each of its first five calls, then
-- keeps one generic plan unless that plan is estimated to cost more than a fresh one. The
-- claim's lease statement (UPDATE ... WHERE outbox_id = ANY (v_ids), joined to the items) was
-- estimated dearer as a generic plan, whose array of ids has no known length, so PostgreSQL
-- planned it again on every claim. Measured with pg_stat_statements (track = all,
-- track_planning = on) on one connection claiming one item at a time, 500 claims: planning
-- that statement took 0.151 ms a claim against 0.074 ms to run it; the claim's round trip
-- from the client was 0.98 ms at the median, 0.78 ms with plans made once. One item at a
-- time is the quiet queue, where that round trip is most of the delay from enqueue to rail.
--
-- The generic plan is the plan the custom ones were: the lease by primary key for the given
-- ids, the items by primary key (0036's id array keeps both on their indexes whatever the
-- array's length), and the due rows in index order (0037's enable_sort = off, unchanged).
-- The other statements of the claim were already running on generic plans. Nothing the claim
-- returns, locks or fences changes.
ALTER FUNCTION public.claim_outbox_batch(int, text, int, text[])
  SET plan_cache_mode = force_generic_plan;
