-- 0017_outbox_batch_completion.sql
-- complete_outbox_batch: record many outcomes of one worker in one transaction.
--
-- Why: with one complete_outbox_attempt transaction per item, every item costs a commit
-- (SPEC §4: ~4-5k items/s on the reference machine); a whole claimed batch in one
-- transaction costs one commit for all of them.
--
-- Semantics are complete_outbox_attempt's, item by item:
--   * P7003 when ANY element asks for a state other than DISPATCHED/FAILED/RETRYABLE,
--     checked before anything is locked or written (a programming error: nothing of the
--     call is recorded).
--   * each item is fenced like a single completion: the pending row must still be leased
--     to p_worker_id with that lease_token and an unexpired lease (now() is the
--     transaction start, as in complete_outbox_attempt). A row that fails the fence is
--     NOT an error for the batch: it comes back with lease_lost = true, attempt_no and
--     state NULL, and nothing is written for it (the single function's P7002).
--   * each recorded item gets its own attempt row numbered max(attempt_no)+1; RETRYABLE at
--     or beyond outbox_retry_ceiling() becomes FAILED with error_code defaulting to
--     'RETRY_CEILING' (the ceiling is only read when a RETRYABLE item is recorded, as in
--     the single function, so a bad GUC fails exactly the calls it would fail there).
--   * terminal items (DISPATCHED/FAILED) lose their pending row; RETRYABLE items get their
--     lease cleared and are due again after max(1, retry_delay_seconds) seconds.
--   * the same outbox_id twice in one call behaves like two single calls in input order:
--     the first element whose token passes the fence is recorded, every other element of
--     that id is lease_lost (the lease is gone once the first is recorded).
--
-- Two statements, not one: the first locks the live rows (FOR UPDATE, in outbox_id order,
-- so two overlapping batches cannot deadlock); the second runs on a fresh READ COMMITTED
-- snapshot taken after those locks were granted, so the attempt numbers it computes see
-- every attempt committed before it, exactly as the single function does.
--
-- p_outcomes: JSON array of objects
--   {outbox_id, lease_token, state, rail_reference, rail_code, error_code, error_message,
--    latency_ms, retry_delay_seconds}
-- (outbox_id and state required; the rest optional/nullable, as the single function's
-- defaults). Returns one row per element, in input order.
CREATE FUNCTION public.complete_outbox_batch(
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
  v_bad  record;
  v_live uuid[];
BEGIN
  IF p_outcomes IS NULL OR jsonb_typeof(p_outcomes) <> 'array' THEN
    RAISE EXCEPTION 'complete_outbox_batch: p_outcomes must be a JSON array of outcome objects, got %',
      COALESCE(jsonb_typeof(p_outcomes), 'NULL')
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

  -- 1) Fence and lock. A row whose lease changed while we waited for its lock is
  --    re-checked against the fence (READ COMMITTED re-evaluation) and left out.
  SELECT COALESCE(array_agg(l.outbox_id), '{}') INTO v_live
    FROM (
      SELECT p.outbox_id
        FROM jsonb_to_recordset(p_outcomes) AS o(outbox_id uuid, lease_token uuid)
        JOIN public.payment_outbox_pending p
          ON p.outbox_id = o.outbox_id
         AND p.lease_token = o.lease_token
       WHERE p.claimed_by = p_worker_id
         AND p.lease_expires_at > now()
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
    SELECT DISTINCT ON (i.outbox_id)
           i.*, p.instruction_id, p.participant_id, p.sequence_id, p.idempotency_key,
           p.rail_type, p.payload
      FROM input i
      JOIN public.payment_outbox_pending p
        ON p.outbox_id = i.outbox_id
       AND p.lease_token = i.lease_token
     WHERE p.outbox_id = ANY (v_live)
       AND p.claimed_by = p_worker_id
       AND p.lease_expires_at > now()
     ORDER BY i.outbox_id, i.ord
  ),
  numbered AS (
    SELECT r.*, COALESCE(m.max_attempt_no, 0) + 1 AS next_attempt_no
      FROM recorded r
      LEFT JOIN LATERAL (
        SELECT max(a.attempt_no) AS max_attempt_no
          FROM public.payment_outbox_attempts a
         WHERE a.outbox_id = r.outbox_id
      ) m ON true
  ),
  decided AS (
    SELECT n.*,
           -- CASE evaluates in order: the ceiling is read for RETRYABLE items only.
           CASE WHEN n.requested <> 'RETRYABLE' THEN n.requested
                WHEN n.next_attempt_no >= public.outbox_retry_ceiling()
                THEN 'FAILED'::public.outbox_attempt_state
                ELSE n.requested
           END AS final_state
      FROM numbered n
  ),
  appended AS (
    INSERT INTO public.payment_outbox_attempts (
      outbox_id, instruction_id, participant_id, sequence_id, idempotency_key, rail_type, payload,
      attempt_no, state, claimed_at, completed_at,
      rail_reference, rail_code, error_code, error_message, latency_ms, worker_id
    )
    SELECT d.outbox_id, d.instruction_id, d.participant_id, d.sequence_id, d.idempotency_key,
           d.rail_type, d.payload,
           d.next_attempt_no, d.final_state, now(),
           CASE WHEN d.final_state IN ('DISPATCHED', 'FAILED') THEN now() END,
           d.rail_reference, d.rail_code,
           CASE WHEN d.final_state <> d.requested THEN COALESCE(d.error_code, 'RETRY_CEILING')
                ELSE d.error_code
           END,
           d.error_message, d.latency_ms, p_worker_id
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
END;
$$;

REVOKE ALL ON FUNCTION public.complete_outbox_batch(text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION public.complete_outbox_batch(text, jsonb)
  FROM symphony_control, symphony_ingest, symphony_readonly, symphony_auditor;
GRANT EXECUTE ON FUNCTION public.complete_outbox_batch(text, jsonb) TO symphony_executor;
