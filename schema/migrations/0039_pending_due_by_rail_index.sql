-- symphony:no-transaction
-- 0039_pending_due_by_rail_index.sql
-- The due index, per rail: (rail_type, next_attempt_at, created_at) for unleased rows.
--
-- ix_pending_due (0007) orders every rail's due rows together, so a claim that must not take
-- some of them read past them one by one: the due rows of a paused rail, of a rail with its
-- own controls (rate limit, breaker, ordering: claimed on its own, 0024), or of a rail the
-- worker does not serve. Measured with 200,000 due rows of a paused rail ahead of 20,000
-- others: 32-40 ms per claim of 256 against 4.4-5.3 ms without them, and a relayer drain of
-- the other rail at 5,903 items/s against 10,612, with 192 against 76 us of backend CPU per
-- item. The cost grows with the backlog an operator is holding back, which is when the other
-- rails need the relayer most. 0040 claims each rail through this index; 0041 drops the old one.
--
-- Built CONCURRENTLY so adding it to a live queue does not block enqueue or claim (hence no
-- transaction; the runner drops an INVALID leftover of an interrupted build first).
-- Partial on `claimed_by IS NULL` like ix_pending_due: a claim's update takes the row out of
-- the predicate, so claiming and completing write no entry in it; only enqueue and a retry's
-- rescheduling do, as they did in ix_pending_due.
CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_pending_due_by_rail
  ON public.payment_outbox_pending (rail_type, next_attempt_at, created_at)
  WHERE claimed_by IS NULL;
