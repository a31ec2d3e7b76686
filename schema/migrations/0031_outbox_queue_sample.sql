-- 0031_outbox_queue_sample.sql
-- One queue sample per fleet per interval, instead of a scan of the queue by every worker.
--
-- outbox_queue_stats() and outbox_queue_stats_by_rail() read every pending row: on 1M rows a
-- parallel sequential scan of 164-357 ms (issue 9), and every relayer ran both every
-- SYMPHONY_QUEUE_STATS_INTERVAL_MS. outbox_queue_sample(p_max_age_ms) returns the fleet's
-- shared sample instead, and takes a new one only when the stored one is older than
-- p_max_age_ms AND this caller wins a transaction-level advisory try-lock: at most one worker
-- of the fleet scans per interval, the others read one row and never wait. The figures
-- are exact figures as of sampled_at (returned, so metrics can show the sample's age), the
-- oldest due age included (as it was then: it is not extrapolated).
-- `symphony-relay status` keeps the exact, live outbox_queue_stats().

CREATE TABLE public.outbox_queue_sample (
  singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  sampled_at     timestamptz NOT NULL,
  pending        bigint NOT NULL,
  due            bigint NOT NULL,
  leased         bigint NOT NULL,
  expired_leases bigint NOT NULL,
  oldest_due_age_seconds double precision,
  -- [{"rail_type": ..., "pending": n, "due": n, "oldest_due_age_seconds": s|null}, ...]
  by_rail        jsonb NOT NULL
);

REVOKE ALL ON TABLE public.outbox_queue_sample FROM PUBLIC;

CREATE FUNCTION public.outbox_queue_sample(p_max_age_ms int)
RETURNS TABLE (
  sampled_at             timestamptz,
  pending                bigint,
  due                    bigint,
  leased                 bigint,
  expired_leases         bigint,
  oldest_due_age_seconds double precision,
  by_rail                jsonb
)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
#variable_conflict use_column
DECLARE
  v_sample public.outbox_queue_sample;
BEGIN
  IF p_max_age_ms IS NULL OR p_max_age_ms < 0 OR p_max_age_ms > 3600000 THEN
    RAISE EXCEPTION 'outbox_queue_sample: p_max_age_ms must be between 0 and 3600000, got %', p_max_age_ms
      USING ERRCODE = '22023';
  END IF;
  SELECT s.* INTO v_sample FROM public.outbox_queue_sample s;
  -- The two-int advisory key space is separate from the bigint one the enqueue locks use.
  IF (v_sample.sampled_at IS NULL
      OR v_sample.sampled_at <= clock_timestamp() - make_interval(secs => p_max_age_ms / 1000.0))
     AND pg_try_advisory_xact_lock(7031, 1) THEN
    INSERT INTO public.outbox_queue_sample AS s
      (singleton, sampled_at, pending, due, leased, expired_leases, oldest_due_age_seconds, by_rail)
    SELECT true, now(), q.pending, q.due, q.leased, q.expired_leases, q.oldest_due_age_seconds,
           (SELECT COALESCE(jsonb_agg(to_jsonb(r) ORDER BY r.rail_type), '[]'::jsonb)
              FROM public.outbox_queue_stats_by_rail() r)
      FROM public.outbox_queue_stats() q
    ON CONFLICT (singleton) DO UPDATE
      SET sampled_at = excluded.sampled_at, pending = excluded.pending, due = excluded.due,
          leased = excluded.leased, expired_leases = excluded.expired_leases,
          oldest_due_age_seconds = excluded.oldest_due_age_seconds, by_rail = excluded.by_rail
    RETURNING s.* INTO v_sample;
  END IF;
  IF v_sample.sampled_at IS NULL THEN
    RETURN; -- never sampled, and another worker is taking the first sample right now
  END IF;
  RETURN QUERY
  SELECT v_sample.sampled_at, v_sample.pending, v_sample.due, v_sample.leased,
         v_sample.expired_leases, v_sample.oldest_due_age_seconds, v_sample.by_rail;
END;
$$;

REVOKE ALL ON FUNCTION public.outbox_queue_sample(int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.outbox_queue_sample(int) TO symphony_executor;
