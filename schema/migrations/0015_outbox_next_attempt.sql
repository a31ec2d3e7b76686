-- 0015_outbox_next_attempt.sql
-- outbox_next_attempt_at: the earliest next_attempt_at among unleased rows (NULL when
-- there are none), so an idle worker can sleep exactly until the next scheduled retry
-- instead of polling. Leased rows are left out: their expiry is repair's business.
-- Served by the partial index ix_pending_due (0007) in next_attempt_at order; the
-- predicate is spelled `claimed_by IS NULL` like the index's so the planner can use it.
CREATE FUNCTION public.outbox_next_attempt_at()
RETURNS timestamptz
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
  SELECT min(p.next_attempt_at)
    FROM public.payment_outbox_pending p
   WHERE p.claimed_by IS NULL;
$$;

REVOKE ALL ON FUNCTION public.outbox_next_attempt_at() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.outbox_next_attempt_at() TO symphony_executor;
