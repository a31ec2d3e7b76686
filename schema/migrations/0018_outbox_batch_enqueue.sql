-- 0018_outbox_batch_enqueue.sql
-- enqueue_payment_outbox_batch: many enqueues in one call and one transaction, with the
-- guarantees of enqueue_payment_outbox (0002) item by item:
--   * idempotent on (instruction_id, idempotency_key): a key already queued returns its
--     pending row ('PENDING'); a key whose item already finished returns its terminal
--     attempt's state; neither creates an item nor consumes a sequence number. The same
--     key twice in one call is one item: every occurrence returns it.
--   * per-participant sequence ids are gap-free: each participant's counter row is bumped
--     once by the number of new items (the upsert's row lock serialises allocations until
--     commit, as bump_participant_outbox_seq does), and the new items take consecutive
--     numbers in input order.
--   * a payload that is not a JSON object is refused with 23514 (as the table's CHECK
--     does for the single function) -- here for every element, before anything is locked,
--     even when its key already exists: a malformed batch is a caller bug.
--
-- Locking: first the per-(instruction, key) advisory locks of the whole batch, in
-- ascending key order, then the participant counter rows, in participant order (the
-- upsert processes its input sorted). Two batches therefore always take their locks in
-- one global order and cannot deadlock each other, and a single enqueue (one advisory
-- lock, then one counter row) cannot close a cycle with a batch either. The lookups run
-- in a statement after the advisory locks, so they see whatever an earlier holder of the
-- same key committed (READ COMMITTED takes a new snapshot per statement).
--
-- p_items: JSON array of {instruction_id, participant_id, idempotency_key, rail_type,
-- payload}. Returns one row per element, in input order, with the single function's
-- columns. A missing text field is refused by the table's NOT NULL constraints (23502).
CREATE FUNCTION public.enqueue_payment_outbox_batch(p_items jsonb)
RETURNS TABLE (
  outbox_id   uuid,
  sequence_id bigint,
  created_at  timestamptz,
  state       text
)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
#variable_conflict use_column
DECLARE
  v_bad      record;
  v_lock_key bigint;
BEGIN
  IF p_items IS NULL OR jsonb_typeof(p_items) <> 'array' THEN
    RAISE EXCEPTION 'enqueue_payment_outbox_batch: p_items must be a JSON array of item objects, got %',
      COALESCE(jsonb_typeof(p_items), 'NULL')
      USING ERRCODE = '22023';
  END IF;

  SELECT o.ord, jsonb_typeof(o.elem) AS elem_type, jsonb_typeof(o.elem -> 'payload') AS payload_type
    INTO v_bad
    FROM jsonb_array_elements(p_items) WITH ORDINALITY AS o(elem, ord)
   WHERE jsonb_typeof(o.elem) IS DISTINCT FROM 'object'
      OR jsonb_typeof(o.elem -> 'payload') IS DISTINCT FROM 'object'
   ORDER BY o.ord
   LIMIT 1;
  IF FOUND THEN
    IF v_bad.elem_type IS DISTINCT FROM 'object' THEN
      RAISE EXCEPTION 'enqueue_payment_outbox_batch: element % of p_items is a JSON %, not an item object', v_bad.ord, v_bad.elem_type
        USING ERRCODE = '22023';
    END IF;
    RAISE EXCEPTION 'enqueue_payment_outbox_batch: element % has a payload that is a JSON %, not an object; nothing of this batch was enqueued',
      v_bad.ord, COALESCE(v_bad.payload_type, 'NULL (missing)')
      USING ERRCODE = '23514',
            CONSTRAINT = 'ck_pending_payload_is_object',
            HINT = 'Send each payment instruction payload as a JSON object.';
  END IF;

  -- Same 64-bit key as enqueue_payment_outbox, so a batch and a single enqueue of one
  -- (instruction, key) exclude each other too. NULL fields give a NULL key: no lock, and
  -- the insert's NOT NULL constraint refuses the element.
  FOR v_lock_key IN
    SELECT DISTINCT hashtextextended((o.elem ->> 'instruction_id') || chr(31) || (o.elem ->> 'idempotency_key'), 1) AS k
      FROM jsonb_array_elements(p_items) AS o(elem)
     WHERE (o.elem ->> 'instruction_id') IS NOT NULL
       AND (o.elem ->> 'idempotency_key') IS NOT NULL
     ORDER BY k
  LOOP
    PERFORM pg_advisory_xact_lock(v_lock_key);
  END LOOP;

  RETURN QUERY
  WITH items AS (
    SELECT o.ord,
           o.elem ->> 'instruction_id'  AS instruction_id,
           o.elem ->> 'participant_id'  AS participant_id,
           o.elem ->> 'idempotency_key' AS idempotency_key,
           o.elem ->> 'rail_type'       AS rail_type,
           o.elem -> 'payload'          AS payload
      FROM jsonb_array_elements(p_items) WITH ORDINALITY AS o(elem, ord)
  ),
  keyed AS (
    -- The first occurrence of each key speaks for the item.
    SELECT DISTINCT ON (i.instruction_id, i.idempotency_key) i.*
      FROM items i
     ORDER BY i.instruction_id, i.idempotency_key, i.ord
  ),
  existing AS (
    -- As in enqueue_payment_outbox: the pending row if queued, else the item's attempt,
    -- terminal first, latest first.
    SELECT k.instruction_id, k.idempotency_key, e.outbox_id, e.sequence_id, e.created_at, e.state
      FROM keyed k
     CROSS JOIN LATERAL (
       SELECT x.outbox_id, x.sequence_id, x.created_at, x.state
         FROM (
           SELECT p.outbox_id, p.sequence_id, p.created_at, 'PENDING'::text AS state, 0 AS preference
             FROM public.payment_outbox_pending p
            WHERE p.instruction_id = k.instruction_id
              AND p.idempotency_key = k.idempotency_key
           UNION ALL
           (SELECT a.outbox_id, a.sequence_id, uuid_extract_timestamp(a.outbox_id), a.state::text, 1
              FROM public.payment_outbox_attempts a
             WHERE a.instruction_id = k.instruction_id
               AND a.idempotency_key = k.idempotency_key
             ORDER BY (a.state IN ('DISPATCHED', 'FAILED')) DESC, a.attempt_no DESC
             LIMIT 1)
         ) x
        ORDER BY x.preference
        LIMIT 1
     ) e
  ),
  fresh AS (
    SELECT k.*,
           row_number() OVER (PARTITION BY k.participant_id ORDER BY k.ord) AS nth,
           count(*) OVER (PARTITION BY k.participant_id) AS participant_new
      FROM keyed k
     WHERE NOT EXISTS (
       SELECT 1 FROM existing x
        WHERE x.instruction_id = k.instruction_id
          AND x.idempotency_key = k.idempotency_key
     )
  ),
  allocated AS (
    -- One bump per participant by its number of new items; RETURNING gives the counter
    -- after the bump, so this batch owns [next - n, next - 1].
    INSERT INTO public.participant_outbox_sequences AS s (participant_id, next_sequence_id)
    SELECT f.participant_id, max(f.participant_new) + 1
      FROM fresh f
     WHERE f.participant_id IS NOT NULL
     GROUP BY f.participant_id
     ORDER BY f.participant_id
    ON CONFLICT (participant_id) DO UPDATE
      SET next_sequence_id = s.next_sequence_id + (excluded.next_sequence_id - 1),
          updated_at = now()
    RETURNING s.participant_id, s.next_sequence_id AS next_after
  ),
  inserted AS (
    INSERT INTO public.payment_outbox_pending AS p (
      instruction_id, participant_id, sequence_id, idempotency_key, rail_type, payload
    )
    SELECT f.instruction_id, f.participant_id,
           a.next_after - f.participant_new + f.nth - 1,
           f.idempotency_key, f.rail_type, f.payload
      FROM fresh f
      LEFT JOIN allocated a ON a.participant_id = f.participant_id
     ORDER BY f.ord
    RETURNING p.instruction_id, p.idempotency_key, p.outbox_id, p.sequence_id, p.created_at
  )
  SELECT COALESCE(x.outbox_id, n.outbox_id),
         COALESCE(x.sequence_id, n.sequence_id),
         COALESCE(x.created_at, n.created_at),
         COALESCE(x.state, 'PENDING')
    FROM items i
    LEFT JOIN existing x
      ON x.instruction_id = i.instruction_id AND x.idempotency_key = i.idempotency_key
    LEFT JOIN inserted n
      ON n.instruction_id = i.instruction_id AND n.idempotency_key = i.idempotency_key
   ORDER BY i.ord;
END;
$$;

REVOKE ALL ON FUNCTION public.enqueue_payment_outbox_batch(jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION public.enqueue_payment_outbox_batch(jsonb)
  FROM symphony_control, symphony_executor, symphony_readonly, symphony_auditor;
GRANT EXECUTE ON FUNCTION public.enqueue_payment_outbox_batch(jsonb) TO symphony_ingest;
