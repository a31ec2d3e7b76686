-- 0016_outbox_queue_stats.sql
-- outbox_queue_stats: queue gauges for metrics and status, readable by roles that have
-- no table privileges.
--   pending                 every row in the queue
--   due                     claimable now: no lease at all and next_attempt_at <= now()
--   leased                  held under a lease, live or expired
--   expired_leases          leases past their expiry, awaiting repair_expired_leases (an
--                           expired lease is never claimed directly, see 0002); a figure
--                           that stays above zero means no worker is running repair
--   oldest_due_age_seconds  how long the longest-waiting due row has been due (NULL if none)
-- One pass over the pending table: cheap while the queue is short, which is its normal
-- state; scrape it at metrics intervals, not per item.
CREATE FUNCTION public.outbox_queue_stats()
RETURNS TABLE (
  pending                bigint,
  due                    bigint,
  leased                 bigint,
  expired_leases         bigint,
  oldest_due_age_seconds double precision
)
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
  SELECT count(*),
         count(*) FILTER (WHERE d.is_due),
         count(*) FILTER (WHERE p.claimed_by IS NOT NULL),
         count(*) FILTER (WHERE p.lease_expires_at <= now()),
         extract(epoch FROM now() - min(p.next_attempt_at) FILTER (WHERE d.is_due))::double precision
    FROM public.payment_outbox_pending p
   CROSS JOIN LATERAL (
     SELECT p.claimed_by IS NULL AND p.next_attempt_at <= now() AS is_due
   ) d;
$$;

REVOKE ALL ON FUNCTION public.outbox_queue_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.outbox_queue_stats() TO symphony_executor, symphony_readonly;
