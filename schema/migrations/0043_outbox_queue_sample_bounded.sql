-- 0043_outbox_queue_sample_bounded.sql
-- The shared queue sample costs the same at any queue size: exact while the queue is small,
-- an estimate that says so once it is large (issue 9: "queue statistics cost O(1) per fleet
-- per interval").
--
-- 0042 counted every unleased entry of ix_pending_due_by_rail: exact, but 96-225 ms at
-- 1,000,000 rows, taken by one worker of the fleet every interval and by the first worker to
-- start. In the bench's 1,000,000-row drains that first sample landed inside a 2-second
-- drain on a 2-core machine, and the drain's rate moved with it (0.77-1.33x of the small
-- queue's rate across runs).
--
-- Now, while the queue's heap is at most p_exact_pages pages (default 2,000: some 100,000
-- rows, about 20 ms to count), the sample is 0042's exact count, unchanged. (The heap, not
-- the index: the index deduplicates equal keys, and a batch enqueued in one transaction
-- shares its timestamps, so its size says little about how many entries a count reads.)
-- Above it:
--   * the rails come from a loose scan of the index (one probe per rail);
--   * each rail's unleased entries are counted exactly, in due order, up to an equal share of
--     100,000 (at least 1,000): a rail with no more than its share is exact, pending and due;
--     a larger rail whose first entries include a row not yet due has its due count exact
--     too (due rows come first);
--   * the rest (a large rail's pending, and its due when more than 1,000 are due) is scaled
--     up from a block sample of about 300 heap pages (TABLESAMPLE SYSTEM), never below the
--     exact lower bound the count above established;
--   * each rail's oldest due row is its first index entry: exact;
--   * leased and expired leases still come from the lease index: exact (bounded by what the
--     fleet has in flight).
-- The row says which it is: outbox_queue_sample.estimated, returned with the figures and
-- exported as a metric, so nobody reads an estimate as a count.
-- Sorting and sequential scans are off in the function (as sorting in 0037, 0040): without
-- statistics the per-rail probes must not become a sort of every row, nor the count of leased
-- rows a read of the whole queue (measured: a queue never analyzed counted its 5 leases by a
-- sequential scan of 120,000 rows). The block sample is a sample scan, which neither affects.

ALTER TABLE public.outbox_queue_sample
  ADD COLUMN estimated boolean NOT NULL DEFAULT false;

DROP FUNCTION public.outbox_queue_sample(int);

CREATE FUNCTION public.outbox_queue_sample(p_max_age_ms int, p_exact_pages int DEFAULT 2000)
RETURNS TABLE (
  sampled_at             timestamptz,
  pending                bigint,
  due                    bigint,
  leased                 bigint,
  expired_leases         bigint,
  oldest_due_age_seconds double precision,
  by_rail                jsonb,
  estimated              boolean
)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
SET enable_sort = off
SET enable_seqscan = off
AS $$
#variable_conflict use_column
DECLARE
  v_sample   public.outbox_queue_sample;
  v_pages    bigint;
  v_rails    text[] := '{}';
  v_exact    int := 0;
  v_estimate boolean;
  -- Percent of the heap's blocks the estimate reads: about 300 of them.
  v_percent  double precision;
BEGIN
  IF p_max_age_ms IS NULL OR p_max_age_ms < 0 OR p_max_age_ms > 3600000 THEN
    RAISE EXCEPTION 'outbox_queue_sample: p_max_age_ms must be between 0 and 3600000, got %', p_max_age_ms
      USING ERRCODE = '22023';
  END IF;
  IF p_exact_pages IS NULL OR p_exact_pages < 0 OR p_exact_pages > 1000000 THEN
    RAISE EXCEPTION 'outbox_queue_sample: p_exact_pages must be between 0 and 1000000, got %', p_exact_pages
      USING ERRCODE = '22023';
  END IF;
  SELECT s.* INTO v_sample FROM public.outbox_queue_sample s;
  -- The two-int advisory key space is separate from the bigint one the enqueue locks use.
  IF (v_sample.sampled_at IS NULL
      OR v_sample.sampled_at <= clock_timestamp() - make_interval(secs => p_max_age_ms / 1000.0))
     AND pg_try_advisory_xact_lock(7031, 1) THEN
    v_pages := pg_relation_size('public.payment_outbox_pending'::regclass)
               / current_setting('block_size')::bigint;
    v_estimate := v_pages > p_exact_pages;
    v_percent := LEAST(100.0, 100.0 * 300 / GREATEST(1, v_pages));
    IF v_estimate THEN
      -- The rails with unleased rows, one index probe each (a loose scan of the due index).
      WITH RECURSIVE rails AS (
        (SELECT p.rail_type
           FROM public.payment_outbox_pending p
          WHERE p.claimed_by IS NULL
          ORDER BY p.rail_type
          LIMIT 1)
        UNION ALL
        SELECT n.rail_type
          FROM rails r
         CROSS JOIN LATERAL (
           SELECT p.rail_type
             FROM public.payment_outbox_pending p
            WHERE p.claimed_by IS NULL
              AND p.rail_type > r.rail_type
            ORDER BY p.rail_type
            LIMIT 1
         ) n
      )
      SELECT COALESCE(array_agg(r.rail_type), '{}') INTO v_rails FROM rails r;
      -- 100,000 exactly counted entries shared among the rails, at least 1,000 each.
      v_exact := GREATEST(1000, 100000 / GREATEST(1, cardinality(v_rails)));
    END IF;
    INSERT INTO public.outbox_queue_sample AS s
      (singleton, sampled_at, pending, due, leased, expired_leases, oldest_due_age_seconds,
       by_rail, estimated)
    WITH counted AS (
      -- Exact: every unleased row from the due index alone (an index-only scan).
      SELECT p.rail_type,
             count(*) AS pending,
             count(*) FILTER (WHERE p.next_attempt_at <= now()) AS due,
             min(p.next_attempt_at) FILTER (WHERE p.next_attempt_at <= now()) AS oldest_due
        FROM public.payment_outbox_pending p
       WHERE NOT v_estimate
         AND p.claimed_by IS NULL
       GROUP BY p.rail_type
    ),
    rails AS (
      SELECT r.rail_type FROM unnest(v_rails) AS r(rail_type)
    ),
    prefix AS (
      -- Each rail's first v_exact + 1 unleased rows in due order, counted, and its oldest due row.
      SELECT r.rail_type, c.seen, c.seen_due, o.oldest_due
        FROM rails r
       CROSS JOIN LATERAL (
         SELECT count(*) AS seen, count(*) FILTER (WHERE x.next_attempt_at <= now()) AS seen_due
           FROM (
             SELECT p.next_attempt_at
               FROM public.payment_outbox_pending p
              WHERE p.claimed_by IS NULL
                AND p.rail_type = r.rail_type
              ORDER BY p.next_attempt_at
              LIMIT v_exact + 1
           ) x
       ) c
        LEFT JOIN LATERAL (
          SELECT p.next_attempt_at AS oldest_due
            FROM public.payment_outbox_pending p
           WHERE p.claimed_by IS NULL
             AND p.rail_type = r.rail_type
             AND p.next_attempt_at <= now()
           ORDER BY p.next_attempt_at
           LIMIT 1
        ) o ON true
    ),
    sampled AS (
      -- Estimate: unleased rows per rail in a block sample of the heap, scaled up.
      SELECT p.rail_type,
             count(*) * 100.0 / v_percent AS pending,
             count(*) FILTER (WHERE p.next_attempt_at <= now()) * 100.0 / v_percent AS due
        FROM public.payment_outbox_pending p TABLESAMPLE SYSTEM (v_percent)
       WHERE v_estimate
         AND p.claimed_by IS NULL
       GROUP BY p.rail_type
    ),
    guessed AS (
      SELECT x.rail_type,
             CASE WHEN x.seen <= v_exact THEN x.seen
                  ELSE GREATEST(v_exact + 1, round(COALESCE(m.pending, 0)))::bigint
             END AS pending,
             CASE WHEN x.seen <= v_exact OR x.seen_due < x.seen THEN x.seen_due
                  ELSE GREATEST(v_exact + 1, round(COALESCE(m.due, 0)))::bigint
             END AS due,
             x.oldest_due
        FROM prefix x
        LEFT JOIN sampled m ON m.rail_type = x.rail_type
    ),
    unleased AS (
      SELECT c.rail_type, c.pending, c.due, c.oldest_due FROM counted c
      UNION ALL
      -- A sampled due count above the sampled pending count is noise: pending is at least due.
      SELECT g.rail_type, GREATEST(g.pending, g.due), g.due, g.oldest_due FROM guessed g
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
                    ORDER BY r.rail_type), '[]'::jsonb),
           v_estimate
      FROM by_rail r
    ON CONFLICT (singleton) DO UPDATE
      SET sampled_at = excluded.sampled_at, pending = excluded.pending, due = excluded.due,
          leased = excluded.leased, expired_leases = excluded.expired_leases,
          oldest_due_age_seconds = excluded.oldest_due_age_seconds, by_rail = excluded.by_rail,
          estimated = excluded.estimated
    RETURNING s.* INTO v_sample;
  END IF;
  IF v_sample.sampled_at IS NULL THEN
    RETURN; -- never sampled, and another worker is taking the first sample right now
  END IF;
  RETURN QUERY
  SELECT v_sample.sampled_at, v_sample.pending, v_sample.due, v_sample.leased,
         v_sample.expired_leases, v_sample.oldest_due_age_seconds, v_sample.by_rail,
         v_sample.estimated;
END;
$$;

REVOKE ALL ON FUNCTION public.outbox_queue_sample(int, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.outbox_queue_sample(int, int) TO symphony_executor;
