-- 0029_lease_fence_and_completer.sql
-- Lease tokens are the executor's alone, attempts name the login that completed them, and
-- the lease fence reads the clock at completion (issue 12).
--
--   * A lease token is the proof of holding a lease: a reader that can see it can complete
--     the item in the holder's stead. Readers (symphony_readonly, symphony_auditor) and
--     control lose table-wide SELECT on payment_outbox_pending and get SELECT on every
--     column but lease_token (42501 when they name it, or SELECT *). The executor never
--     had table access; it sees its own tokens in claim_outbox_batch's result.
--   * payment_outbox_attempts.completed_by: the session_user (the login, which SET ROLE and
--     SECURITY DEFINER do not change) of the session that appended the attempt: worker_id
--     is what the caller says, completed_by is who it is. Attempts appended before this
--     migration read NULL (unknown). A column default, so every writer (completion, batch
--     completion, repair) records it and no caller can choose it.
--   * The fence compares lease_expires_at with clock_timestamp() (the moment the row is
--     checked and locked) instead of now() (the transaction's start): a completion whose
--     transaction began before the lease expired is refused once it has expired.
--     Everything else in both functions is as in 0024, SQLSTATEs included.

ALTER TABLE public.payment_outbox_attempts ADD COLUMN completed_by text;
ALTER TABLE public.payment_outbox_attempts ALTER COLUMN completed_by SET DEFAULT session_user;
COMMENT ON COLUMN public.payment_outbox_attempts.completed_by IS
  'Login (session_user) of the session that appended this attempt; NULL for attempts appended before 0029.';

-- ------------------------------------------------------------
-- Lease tokens hidden from readers and control
-- ------------------------------------------------------------
REVOKE SELECT ON TABLE public.payment_outbox_pending
  FROM symphony_control, symphony_readonly, symphony_auditor;
GRANT SELECT (
  outbox_id, participant_id, sequence_id, rail_type, attempt_count, next_attempt_at,
  claimed_by, lease_expires_at, created_at, updated_at, drive_attempt_base
) ON TABLE public.payment_outbox_pending
  TO symphony_control, symphony_readonly, symphony_auditor;

-- ------------------------------------------------------------
-- complete_outbox_attempt: as in 0024, fenced at clock_timestamp()
-- ------------------------------------------------------------
CREATE OR REPLACE FUNCTION public.complete_outbox_attempt(
  p_outbox_id           uuid,
  p_lease_token         uuid,
  p_worker_id           text,
  p_state               public.outbox_attempt_state,
  p_rail_reference      text DEFAULT NULL,
  p_rail_code           text DEFAULT NULL,
  p_error_code          text DEFAULT NULL,
  p_error_message       text DEFAULT NULL,
  p_latency_ms          int DEFAULT NULL,
  p_retry_delay_seconds int DEFAULT 1
)
RETURNS TABLE (
  attempt_no int,
  state      public.outbox_attempt_state
)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
#variable_conflict use_column
DECLARE
  v_attempt_no int;
  v_base       int;
  v_queued     record;
  v_state      public.outbox_attempt_state;
  v_error_code text := p_error_code;
BEGIN
  IF p_state IS NULL OR p_state NOT IN ('DISPATCHED', 'FAILED', 'RETRYABLE') THEN
    RAISE EXCEPTION 'Invalid completion state %: only DISPATCHED, FAILED or RETRYABLE complete an attempt', p_state
      USING ERRCODE = 'P7003';
  END IF;
  PERFORM public.assert_retry_delay('complete_outbox_attempt', p_retry_delay_seconds);

  SELECT p.drive_attempt_base, p.rail_type, p.participant_id, p.sequence_id INTO v_queued
     FROM public.payment_outbox_pending p
    WHERE p.outbox_id = p_outbox_id
      AND p.claimed_by = p_worker_id
      AND p.lease_token = p_lease_token
      AND p.lease_expires_at > clock_timestamp()
      FOR UPDATE;

  IF NOT FOUND THEN
    RAISE EXCEPTION 'LEASE_LOST: outbox item % is not leased to worker % with that token (lease expired, repaired, reclaimed or completed)',
      p_outbox_id, left(p_worker_id, 128)
      USING ERRCODE = 'P7002',
            HINT = 'Another worker owns the item now; do not retry this completion.';
  END IF;

  SELECT COALESCE(MAX(a.attempt_no), 0) + 1
    INTO v_attempt_no
    FROM public.payment_outbox_attempts a
   WHERE a.outbox_id = p_outbox_id;

  v_state := p_state;
  v_base := v_queued.drive_attempt_base;
  IF p_state = 'RETRYABLE' AND v_attempt_no - v_base >= public.outbox_retry_ceiling() THEN
    v_state := 'FAILED';
    v_error_code := COALESCE(p_error_code, 'RETRY_CEILING');
  END IF;

  INSERT INTO public.payment_outbox_attempts (
    outbox_id, attempt_no, state, claimed_at, completed_at,
    rail_reference, rail_code, error_code, error_message, latency_ms, worker_id
  )
  VALUES (
    p_outbox_id, v_attempt_no, v_state, now(),
    CASE WHEN v_state IN ('DISPATCHED', 'FAILED') THEN now() END,
    CASE WHEN length(p_rail_reference) <= 512 THEN p_rail_reference END,
    left(p_rail_code, 64), left(v_error_code, 64), left(p_error_message, 1000),
    p_latency_ms, p_worker_id
  );

  IF v_state IN ('DISPATCHED', 'FAILED') THEN
    DELETE FROM public.payment_outbox_pending p
     WHERE p.outbox_id = p_outbox_id;
  ELSE
    UPDATE public.payment_outbox_pending p
       SET attempt_count    = GREATEST(p.attempt_count, v_attempt_no),
           next_attempt_at  = now() + make_interval(secs => GREATEST(1, COALESCE(p_retry_delay_seconds, 1))),
           claimed_by       = NULL,
           lease_token      = NULL,
           lease_expires_at = NULL
     WHERE p.outbox_id = p_outbox_id;
  END IF;

  -- A configured rail's controls learn the outcome (ordered blocks, circuit breaker).
  IF EXISTS (SELECT 1 FROM public.outbox_rail_settings s WHERE s.rail_type = v_queued.rail_type) THEN
    PERFORM public.outbox_rail_outcome(v_queued.rail_type, p_outbox_id, v_queued.participant_id,
                                       v_queued.sequence_id, v_state, v_error_code);
  END IF;

  RETURN QUERY SELECT v_attempt_no, v_state;
END;
$$;

-- ------------------------------------------------------------
-- complete_outbox_batch: as in 0024, fenced at clock_timestamp() when each row is locked;
-- the recording step relies on those locks instead of reading the clock a second time
-- (a second reading could refuse an item the first accepted).
-- ------------------------------------------------------------
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
  v_bad     record;
  v_live    uuid[];
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

  SELECT o.ord INTO v_bad
    FROM jsonb_array_elements(p_outcomes) WITH ORDINALITY AS o(elem, ord)
   WHERE jsonb_typeof(o.elem) IS DISTINCT FROM 'object'
      OR jsonb_typeof(o.elem -> 'outbox_id') IS DISTINCT FROM 'string'
   ORDER BY o.ord
   LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'complete_outbox_batch: element % of p_outcomes is not an object with a string outbox_id', v_bad.ord
      USING ERRCODE = '22023';
  END IF;

  SELECT o.ord, o.elem ->> 'state' AS requested INTO v_bad
    FROM jsonb_array_elements(p_outcomes) WITH ORDINALITY AS o(elem, ord)
   WHERE (o.elem ->> 'state') IS NULL
      OR (o.elem ->> 'state') NOT IN ('DISPATCHED', 'FAILED', 'RETRYABLE')
   ORDER BY o.ord
   LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'Invalid completion state % (element % of the batch): only DISPATCHED, FAILED or RETRYABLE complete an attempt; nothing of this batch was recorded',
      COALESCE(v_bad.requested, 'NULL'), v_bad.ord
      USING ERRCODE = 'P7003';
  END IF;

  PERFORM public.assert_retry_delay('complete_outbox_batch', max((o.elem ->> 'retry_delay_seconds')::int))
     FROM jsonb_array_elements(p_outcomes) AS o(elem);

  -- 1) Fence and lock, in outbox_id order (two overlapping batches cannot deadlock).
  SELECT COALESCE(array_agg(l.outbox_id), '{}') INTO v_live
    FROM (
      SELECT p.outbox_id
        FROM jsonb_to_recordset(p_outcomes) AS o(outbox_id uuid, lease_token uuid)
        JOIN public.payment_outbox_pending p
          ON p.outbox_id = o.outbox_id
         AND p.lease_token = o.lease_token
       WHERE p.claimed_by = p_worker_id
         AND p.lease_expires_at > clock_timestamp()
       ORDER BY p.outbox_id
         FOR UPDATE OF p
    ) l;

  -- 2) Record, on a snapshot taken after the locks.
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
    SELECT DISTINCT ON (i.outbox_id) i.*
      FROM input i
      JOIN public.payment_outbox_pending p
        ON p.outbox_id = i.outbox_id
       AND p.lease_token = i.lease_token
     WHERE p.outbox_id = ANY (v_live)
       AND p.claimed_by = p_worker_id
     ORDER BY i.outbox_id, i.ord
  ),
  numbered AS (
    SELECT r.*, COALESCE(m.max_attempt_no, 0) + 1 AS next_attempt_no, q.drive_attempt_base
      FROM recorded r
      JOIN public.payment_outbox_pending q ON q.outbox_id = r.outbox_id
      LEFT JOIN LATERAL (
        SELECT max(a.attempt_no) AS max_attempt_no
          FROM public.payment_outbox_attempts a
         WHERE a.outbox_id = r.outbox_id
      ) m ON true
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
      rail_reference, rail_code, error_code, error_message, latency_ms, worker_id
    )
    SELECT d.outbox_id, d.next_attempt_no, d.final_state, now(),
           CASE WHEN d.final_state IN ('DISPATCHED', 'FAILED') THEN now() END,
           CASE WHEN length(d.rail_reference) <= 512 THEN d.rail_reference END,
           left(d.rail_code, 64),
           left(CASE WHEN d.final_state <> d.requested THEN COALESCE(d.error_code, 'RETRY_CEILING')
                     ELSE d.error_code
                END, 64),
           left(d.error_message, 1000), d.latency_ms, p_worker_id
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
           lease_expires_at = NULL
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
