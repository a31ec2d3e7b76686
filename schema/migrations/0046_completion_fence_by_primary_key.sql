-- 0046_completion_fence_by_primary_key.sql
-- complete_outbox_batch looks up the rows it fences by primary key at every queue size
-- (issue 9).
--
-- The fence joined the batch's outcomes (jsonb_to_recordset, which the planner estimates at
-- 100 rows whatever their number) to payment_outbox_pending. On a queue of tens of thousands
-- of rows the planner judged a sequential scan of the whole queue, hashed against the
-- outcomes, cheaper than an index probe per outcome, so every batch of outcomes read every
-- queued row: EXPLAIN ANALYZE of a batch of 256 with 17,440 rows queued showed "Seq Scan on
-- payment_outbox_pending ... Rows Removed by Filter: 17184". Disabling sequential scans for
-- the function only moved the read to another index: it then read every leased row of the
-- fleet through ix_pending_lease_expiry, also once per batch.
--
-- The fence now looks each distinct (id, token) of the input up on its own, in id order: a
-- LATERAL subquery with LIMIT 1 and its own row lock, which the planner cannot fold into a
-- join, so it is one probe of the primary key per outcome at any queue size. Its expiry test
-- is written so that it cannot be answered from the partial index of leased rows either
-- (with statistics taken before the claims, that index looked empty and won). The locks are
-- still taken in outbox_id order (the input is sorted before the lookups), a row changed
-- while we waited is still re-checked against its new version, and what the fence admits is
-- unchanged: the same worker, token and unexpired lease, read on the clock. An outcome given
-- twice in one batch is looked up once (it was joined, and locked, once per copy).
--
-- Measured with pg_stat_statements (track = all) on one connection recording 36 batches of
-- 256 outcomes from a queue of 20,000, two runs each way: the fence statement 2.59 and 2.20
-- ms per batch before, 1.04 and 1.03 after; the whole call 10.55 and 9.50 ms before, 8.71
-- and 8.16 after.

CREATE OR REPLACE FUNCTION public.complete_outbox_batch(
  p_worker_id text,
  p_outcomes  jsonb
)
RETURNS TABLE (
  outbox_id  uuid,
  attempt_no int,
  state      public.outbox_attempt_state,
  lease_lost boolean
)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
#variable_conflict use_column
DECLARE
  v_checked record;
  v_live    uuid[];
  v_tokens  uuid[];
  v_bases   int[];
  v_outcome record;
BEGIN
  IF p_outcomes IS NULL OR jsonb_typeof(p_outcomes) <> 'array' THEN
    RAISE EXCEPTION 'complete_outbox_batch: p_outcomes must be a JSON array of outcome objects, got %',
      COALESCE(jsonb_typeof(p_outcomes), 'NULL')
      USING ERRCODE = '22023';
  END IF;
  IF jsonb_array_length(p_outcomes) > 10000 THEN
    RAISE EXCEPTION 'complete_outbox_batch: % outcomes in one batch; the limit is 10000', jsonb_array_length(p_outcomes)
      USING ERRCODE = '22023';
  END IF;

  -- One pass finds the first malformed element and the first invalid state (a malformed
  -- element anywhere is reported before an invalid state, as before).
  SELECT min(o.ord) FILTER (WHERE jsonb_typeof(o.elem) IS DISTINCT FROM 'object'
                               OR jsonb_typeof(o.elem -> 'outbox_id') IS DISTINCT FROM 'string') AS malformed,
         min(o.ord) FILTER (WHERE (o.elem ->> 'state') IS NULL
                               OR (o.elem ->> 'state') NOT IN ('DISPATCHED', 'FAILED', 'RETRYABLE')) AS bad_state
    INTO v_checked
    FROM jsonb_array_elements(p_outcomes) WITH ORDINALITY AS o(elem, ord);
  IF v_checked.malformed IS NOT NULL THEN
    RAISE EXCEPTION 'complete_outbox_batch: element % of p_outcomes is not an object with a string outbox_id', v_checked.malformed
      USING ERRCODE = '22023';
  END IF;
  IF v_checked.bad_state IS NOT NULL THEN
    RAISE EXCEPTION 'Invalid completion state % (element % of the batch): only DISPATCHED, FAILED or RETRYABLE complete an attempt; nothing of this batch was recorded',
      COALESCE(p_outcomes -> (v_checked.bad_state::int - 1) ->> 'state', 'NULL'), v_checked.bad_state
      USING ERRCODE = 'P7003';
  END IF;

  PERFORM public.assert_retry_delay('complete_outbox_batch', max((o.elem ->> 'retry_delay_seconds')::int))
     FROM jsonb_array_elements(p_outcomes) AS o(elem);

  -- 1) Fence and lock, in outbox_id order (two overlapping batches cannot deadlock). A row
  --    another transaction changed while we waited is re-checked against its new version
  --    (worker, token, clock) before it is locked; once locked nobody can change it until we
  --    commit, so what this step returns is what step 2 records. Each (id, token) of the
  --    input is looked up by primary key on its own, in id order: a join let the planner
  --    read the whole queue for every batch once it judged that cheaper (0046).
  SELECT COALESCE(array_agg(l.outbox_id), '{}'), COALESCE(array_agg(l.lease_token), '{}'),
         COALESCE(array_agg(l.drive_attempt_base), '{}')
    INTO v_live, v_tokens, v_bases
    FROM (
      SELECT DISTINCT o.outbox_id, o.lease_token
        FROM jsonb_to_recordset(p_outcomes) AS o(outbox_id uuid, lease_token uuid)
       ORDER BY o.outbox_id, o.lease_token
      OFFSET 0
    ) o
   CROSS JOIN LATERAL (
      SELECT p.outbox_id, p.lease_token, p.drive_attempt_base
        FROM public.payment_outbox_pending p
       WHERE p.claimed_by = p_worker_id
         AND p.outbox_id = o.outbox_id
         AND p.lease_token = o.lease_token
         -- The expiry test through COALESCE: the same test, but one that does not imply
         -- lease_expires_at IS NOT NULL, so the probe cannot be served from
         -- ix_pending_lease_expiry (every leased row), which statistics taken while little
         -- was leased make look empty.
         AND COALESCE(p.lease_expires_at, '-infinity') > clock_timestamp()
       LIMIT 1
         FOR UPDATE
   ) l;

  -- 2) Record what step 1 locked: the input is matched to the locked rows by id and token
  --    (a hash join over two arrays, not a lookup of every input element per locked row).
  RETURN QUERY
  WITH input AS (
    SELECT o.ord,
           (o.elem ->> 'outbox_id')::uuid                            AS outbox_id,
           (o.elem ->> 'lease_token')::uuid                          AS lease_token,
           (o.elem ->> 'state')::public.outbox_attempt_state         AS requested,
           o.elem ->> 'rail_reference'                               AS rail_reference,
           o.elem ->> 'rail_code'                                    AS rail_code,
           o.elem ->> 'error_code'                                   AS error_code,
           o.elem ->> 'error_message'                                AS error_message,
           (o.elem ->> 'latency_ms')::int                            AS latency_ms,
           (o.elem ->> 'retry_delay_seconds')::int                   AS retry_delay_seconds
      FROM jsonb_array_elements(p_outcomes) WITH ORDINALITY AS o(elem, ord)
  ),
  recorded AS (
    -- One winner per item: the first element in input order that passes the fence.
    SELECT DISTINCT ON (i.outbox_id) i.*, l.drive_attempt_base
      FROM input i
      JOIN unnest(v_live, v_tokens, v_bases) AS l(outbox_id, lease_token, drive_attempt_base)
        ON l.outbox_id = i.outbox_id
       AND l.lease_token = i.lease_token
     ORDER BY i.outbox_id, i.ord
  ),
  redriven AS (
    -- The re-drives of the fenced items, counted in one scan (not one per item).
    SELECT x.outbox_id, count(*) AS redrives
      FROM public.outbox_redrives x
     WHERE x.outbox_id = ANY (v_live)
     GROUP BY x.outbox_id
  ),
  numbered AS (
    SELECT r.*, COALESCE(m.max_attempt_no, 0) + 1 AS next_attempt_no,
           1 + COALESCE(x.redrives, 0) AS drive
      FROM recorded r
      LEFT JOIN LATERAL (
        SELECT max(a.attempt_no) AS max_attempt_no
          FROM public.payment_outbox_attempts a
         WHERE a.outbox_id = r.outbox_id
      ) m ON true
      LEFT JOIN redriven x ON x.outbox_id = r.outbox_id
  ),
  decided AS (
    SELECT n.*,
           CASE WHEN n.requested <> 'RETRYABLE' THEN n.requested
                WHEN n.next_attempt_no - n.drive_attempt_base >= public.outbox_retry_ceiling()
                THEN 'FAILED'::public.outbox_attempt_state
                ELSE n.requested
           END AS final_state
      FROM numbered n
  ),
  appended AS (
    INSERT INTO public.payment_outbox_attempts (
      outbox_id, attempt_no, state, claimed_at, completed_at,
      rail_reference, rail_code, error_code, error_message, latency_ms, worker_id, drive
    )
    SELECT d.outbox_id, d.next_attempt_no, d.final_state, now(),
           CASE WHEN d.final_state IN ('DISPATCHED', 'FAILED') THEN now() END,
           CASE WHEN length(d.rail_reference) <= 512 THEN d.rail_reference END,
           left(d.rail_code, 64),
           left(CASE WHEN d.final_state <> d.requested THEN COALESCE(d.error_code, 'RETRY_CEILING')
                     ELSE d.error_code
                END, 64),
           left(d.error_message, 1000), d.latency_ms, p_worker_id, d.drive
      FROM decided d
     ORDER BY d.ord
    RETURNING 1
  ),
  finished AS (
    DELETE FROM public.payment_outbox_pending p
     USING decided d
     WHERE p.outbox_id = d.outbox_id
       AND d.final_state IN ('DISPATCHED', 'FAILED')
    RETURNING 1
  ),
  rescheduled AS (
    UPDATE public.payment_outbox_pending p
       SET attempt_count    = GREATEST(p.attempt_count, d.next_attempt_no),
           next_attempt_at  = now() + make_interval(secs => GREATEST(1, COALESCE(d.retry_delay_seconds, 1))),
           claimed_by       = NULL,
           lease_token      = NULL,
           lease_expires_at = NULL,
           updated_at       = now()
      FROM decided d
     WHERE p.outbox_id = d.outbox_id
       AND d.final_state = 'RETRYABLE'
    RETURNING 1
  )
  SELECT i.outbox_id, d.next_attempt_no, d.final_state, d.ord IS NULL
    FROM input i
    LEFT JOIN decided d ON d.ord = i.ord
   ORDER BY i.ord;

  -- Configured rails' controls learn the outcomes, in the order they were recorded (the
  -- attempts this call appended are the latest of the items it fenced).
  IF EXISTS (SELECT 1 FROM public.outbox_rail_settings) THEN
    FOR v_outcome IN
      SELECT i.rail_type, i.outbox_id, i.participant_id, i.sequence_id, a.state, a.error_code
        FROM unnest(v_live) AS l(outbox_id)
        JOIN public.payment_outbox_items i ON i.outbox_id = l.outbox_id
        JOIN public.outbox_rail_settings s ON s.rail_type = i.rail_type
        CROSS JOIN LATERAL (
          SELECT x.attempt_id, x.state, x.error_code
            FROM public.payment_outbox_attempts x
           WHERE x.outbox_id = l.outbox_id
           ORDER BY x.attempt_no DESC
           LIMIT 1
        ) a
       ORDER BY a.attempt_id
    LOOP
      PERFORM public.outbox_rail_outcome(v_outcome.rail_type, v_outcome.outbox_id, v_outcome.participant_id,
                                         v_outcome.sequence_id, v_outcome.state, v_outcome.error_code);
    END LOOP;
  END IF;
END;
$$;

