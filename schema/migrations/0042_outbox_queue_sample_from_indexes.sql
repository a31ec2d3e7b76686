-- 0042_outbox_queue_sample_from_indexes.sql
-- The shared queue sample (0031, 0035) reads the queue's indexes instead of every row.
--
-- It grouped every pending row by rail in one sequential scan: at 1,000,000 rows 235-450 ms
-- (parallel workers included), every interval, on one backend of the fleet. In a relayer
-- drain of 20,000 items behind 1,000,000 due rows of a paused rail it cost 116-118 us of
-- backend CPU per drained item against 92-98 with this version (throwaway harness, alternating
-- runs; the sample is taken once, at the start, inside the 2-3 s drain).
--
-- Now the unleased rows are counted from ix_pending_due_by_rail (0039), whose partial
-- predicate is exactly `claimed_by IS NULL` and whose columns hold everything counted (an
-- index-only scan, in rail order: 96-100 ms at 1,000,000 rows), and the leased rows from
-- ix_pending_lease_expiry (no more than the fleet has in flight). Same figures, same
-- definitions: pending = unleased + leased; due = unleased and next_attempt_at <= now();
-- leased = claimed_by set, which is lease_expires_at set (INV-PENDING-LEASE-ALL-OR-NOTHING);
-- expired = lease_expires_at <= now(); the oldest due age from the earliest due
-- next_attempt_at. Same JSON per rail, same try-lock. Still exact, so still a read of every
-- unleased index entry: cheaper per row, not constant.
CREATE OR REPLACE FUNCTION public.outbox_queue_sample(p_max_age_ms int)
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
    WITH unleased AS (
      -- Unleased rows from the due index alone (an index-only scan in rail order).
      SELECT p.rail_type,
             count(*) AS pending,
             count(*) FILTER (WHERE p.next_attempt_at <= now()) AS due,
             min(p.next_attempt_at) FILTER (WHERE p.next_attempt_at <= now()) AS oldest_due
        FROM public.payment_outbox_pending p
       WHERE p.claimed_by IS NULL
       GROUP BY p.rail_type
    ),
    leased AS (
      -- Leased rows from the lease index: no more than the fleet has in flight.
      SELECT p.rail_type,
             count(*) AS leased,
             count(*) FILTER (WHERE p.lease_expires_at <= now()) AS expired_leases
        FROM public.payment_outbox_pending p
       WHERE p.lease_expires_at IS NOT NULL
       GROUP BY p.rail_type
    ),
    by_rail AS (
      SELECT COALESCE(u.rail_type, l.rail_type) AS rail_type,
             COALESCE(u.pending, 0) + COALESCE(l.leased, 0) AS pending,
             COALESCE(u.due, 0) AS due,
             COALESCE(l.leased, 0) AS leased,
             COALESCE(l.expired_leases, 0) AS expired_leases,
             u.oldest_due
        FROM unleased u
        FULL JOIN leased l ON l.rail_type = u.rail_type
    )
    SELECT true, now(),
           COALESCE(sum(r.pending), 0)::bigint, COALESCE(sum(r.due), 0)::bigint,
           COALESCE(sum(r.leased), 0)::bigint, COALESCE(sum(r.expired_leases), 0)::bigint,
           extract(epoch FROM now() - min(r.oldest_due))::double precision,
           COALESCE(jsonb_agg(jsonb_build_object(
                      'rail_type', r.rail_type,
                      'pending', r.pending,
                      'due', r.due,
                      'oldest_due_age_seconds',
                      extract(epoch FROM now() - r.oldest_due)::double precision)
                    ORDER BY r.rail_type), '[]'::jsonb)
      FROM by_rail r
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
