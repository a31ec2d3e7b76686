-- 0025_bounded_schema_locks.sql
-- Every advisory lock the schema takes waits a bounded time (issue 12).
--
-- The keys are computable from public strings (an idempotency key, an attestation stream
-- id), and any login of the database may call pg_advisory_lock on any key: PostgreSQL has
-- no privilege on advisory keys, and revoking EXECUTE on pg_catalog's lock functions would
-- break every other tool sharing the database. So a stranger can hold a key; what it must
-- not do is stall an enqueue or an attestation for good. schema_xact_lock waits at most
-- 5 s (or the caller's own lock_timeout when that is shorter) and then refuses with
-- 55P03 lock_not_available, naming the lock and what to do. 55P03 is class 55, which the
-- relayer and producers already treat as transient: the caller retries; the holder, not
-- the queue, is the problem an operator must remove (pg_locks, locktype 'advisory').
--
-- A legitimate holder of the same key is another enqueue of the same idempotency key, or
-- another attestation of the same stream, in a transaction still open: 5 s is far above
-- the time either takes.

CREATE FUNCTION public.schema_lock_wait_bound()
RETURNS interval
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
  SELECT interval '5 seconds'
$$;

-- The lock_timeout to use for one schema lock: the bound, or the caller's shorter one.
CREATE FUNCTION public.schema_lock_timeout()
RETURNS text
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
  v_bound  interval := public.schema_lock_wait_bound();
  v_caller interval := current_setting('lock_timeout')::interval;
BEGIN
  IF v_caller > interval '0' AND v_caller < v_bound THEN
    RETURN (extract(epoch FROM v_caller) * 1000)::bigint::text || 'ms';
  END IF;
  RETURN (extract(epoch FROM v_bound) * 1000)::bigint::text || 'ms';
END;
$$;

-- Transaction-scoped advisory lock with a bounded wait. p_lock names the lock for the
-- error message (never the key's source text: it may be a customer's idempotency key).
-- The caller's lock_timeout is put back afterwards, so only this wait is bounded here.
CREATE FUNCTION public.schema_xact_lock(p_lock text, p_key1 int, p_key2 int)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
  v_caller text := current_setting('lock_timeout');
BEGIN
  -- Uncontended (the usual case): no wait, and no subtransaction for the handler below.
  IF pg_try_advisory_xact_lock(p_key1, p_key2) THEN
    RETURN;
  END IF;
  PERFORM set_config('lock_timeout', public.schema_lock_timeout(), true);
  BEGIN
    PERFORM pg_advisory_xact_lock(p_key1, p_key2);
  EXCEPTION
    WHEN lock_not_available THEN
      PERFORM set_config('lock_timeout', v_caller, true);
      RAISE EXCEPTION 'INV-SCHEMA-LOCK-BOUNDED: the % lock (advisory key %, %) is held by another session; gave up after %',
        p_lock, p_key1, p_key2, public.schema_lock_timeout()
        USING ERRCODE = '55P03',
              HINT = 'Retry. If it persists, find the holder in pg_locks (locktype advisory, classid '
                     || p_key1 || ', objid ' || (p_key2::bigint & 4294967295) || ') and end that session.';
  END;
  PERFORM set_config('lock_timeout', v_caller, true);
END;
$$;

CREATE FUNCTION public.schema_xact_lock(p_lock text, p_key bigint)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
  v_caller text := current_setting('lock_timeout');
BEGIN
  -- Uncontended (the usual case): no wait, and no subtransaction for the handler below.
  IF pg_try_advisory_xact_lock(p_key) THEN
    RETURN;
  END IF;
  PERFORM set_config('lock_timeout', public.schema_lock_timeout(), true);
  BEGIN
    PERFORM pg_advisory_xact_lock(p_key);
  EXCEPTION
    WHEN lock_not_available THEN
      PERFORM set_config('lock_timeout', v_caller, true);
      RAISE EXCEPTION 'INV-SCHEMA-LOCK-BOUNDED: the % lock (advisory key %) is held by another session; gave up after %',
        p_lock, p_key, public.schema_lock_timeout()
        USING ERRCODE = '55P03',
              HINT = 'Retry. If it persists, find the holder in pg_locks (locktype advisory, classid '
                     || (p_key >> 32) || ', objid ' || (p_key & 4294967295) || ') and end that session.';
  END;
  PERFORM set_config('lock_timeout', v_caller, true);
END;
$$;

-- ------------------------------------------------------------
-- The attestation stream lock (0011), now bounded
-- ------------------------------------------------------------
CREATE OR REPLACE FUNCTION public.lock_ingress_attestation_stream(p_stream_id text)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, public, pg_temp
AS $$
  SELECT public.schema_xact_lock('ingress attestation stream', 7301, hashtext(p_stream_id))
$$;

-- ------------------------------------------------------------
-- enqueue_payment_outbox and enqueue_payment_outbox_batch: as in 0021, with the
-- idempotency-key lock bounded (the only change)
-- ------------------------------------------------------------
CREATE OR REPLACE FUNCTION public.enqueue_payment_outbox(
  p_instruction_id  text,
  p_participant_id  text,
  p_idempotency_key text,
  p_rail_type       text,
  p_payload         jsonb,
  p_traceparent     text DEFAULT NULL
)
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
  v_limits   public.outbox_limits;
  v_problem  record;
  v_existing public.payment_outbox_items;
  v_item     public.payment_outbox_items;
BEGIN
  SELECT l.* INTO v_limits FROM public.outbox_limits l;
  SELECT pr.code, pr.message INTO v_problem
    FROM public.outbox_item_input_problem(p_instruction_id, p_participant_id, p_idempotency_key,
                                          p_rail_type, p_payload, p_traceparent,
                                          v_limits.max_payload_bytes,
                                          v_limits.max_payload_depth) pr;
  IF FOUND THEN
    RAISE EXCEPTION 'enqueue_payment_outbox: %', v_problem.message USING ERRCODE = v_problem.code;
  END IF;

  -- Serialises enqueues of one key until commit; the lookup below (a new statement under
  -- READ COMMITTED) then sees whatever an earlier holder committed.
  PERFORM public.schema_xact_lock('idempotency key', public.outbox_key_lock_id(p_idempotency_key));

  SELECT f.* INTO v_existing FROM public.outbox_item_for_key(p_idempotency_key, p_instruction_id) f;
  IF FOUND THEN
    SELECT pr.code, pr.message INTO v_problem
      FROM public.outbox_replay_problem(v_existing, p_instruction_id, p_participant_id, p_rail_type, p_payload) pr;
    IF FOUND THEN
      RAISE EXCEPTION 'enqueue_payment_outbox: %', v_problem.message USING ERRCODE = v_problem.code;
    END IF;
    RETURN QUERY SELECT v_existing.outbox_id, v_existing.sequence_id, v_existing.created_at,
                        public.outbox_item_state(v_existing.outbox_id);
    RETURN;
  END IF;

  INSERT INTO public.payment_outbox_items AS i (
    outbox_id, instruction_id, participant_id, sequence_id, idempotency_key, rail_type,
    payload, payload_sha256, traceparent
  )
  VALUES (
    uuidv7(), p_instruction_id, p_participant_id,
    public.bump_participant_outbox_seq(p_participant_id),
    p_idempotency_key, p_rail_type, p_payload,
    encode(sha256(convert_to(p_payload::text, 'UTF8')), 'hex'), p_traceparent
  )
  RETURNING i.* INTO v_item;

  INSERT INTO public.payment_outbox_pending (outbox_id, participant_id, sequence_id, rail_type, created_at)
  VALUES (v_item.outbox_id, v_item.participant_id, v_item.sequence_id, v_item.rail_type, v_item.created_at);

  RETURN QUERY SELECT v_item.outbox_id, v_item.sequence_id, v_item.created_at, 'PENDING'::text;
END;
$$;

CREATE OR REPLACE FUNCTION public.enqueue_payment_outbox_batch(p_items jsonb)
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
  v_limits   public.outbox_limits;
  v_bad      record;
  v_lock_key bigint;
  v_new      uuid[];
BEGIN
  IF p_items IS NULL OR jsonb_typeof(p_items) <> 'array' THEN
    RAISE EXCEPTION 'enqueue_payment_outbox_batch: p_items must be a JSON array of item objects, got %',
      COALESCE(jsonb_typeof(p_items), 'NULL')
      USING ERRCODE = '22023';
  END IF;
  IF jsonb_array_length(p_items) > 10000 THEN
    RAISE EXCEPTION 'enqueue_payment_outbox_batch: % items in one batch; the limit is 10000', jsonb_array_length(p_items)
      USING ERRCODE = '22023', HINT = 'Split the batch.';
  END IF;

  SELECT o.ord, jsonb_typeof(o.elem) AS elem_type, bad_field.name AS field INTO v_bad
    FROM jsonb_array_elements(p_items) WITH ORDINALITY AS o(elem, ord)
    LEFT JOIN LATERAL (
      SELECT f.name
        FROM unnest(ARRAY['instruction_id', 'participant_id', 'idempotency_key', 'rail_type', 'traceparent']) AS f(name)
       WHERE jsonb_typeof(o.elem) = 'object'
         AND o.elem ? f.name
         AND jsonb_typeof(o.elem -> f.name) <> 'string'
       LIMIT 1
    ) bad_field ON true
   WHERE jsonb_typeof(o.elem) IS DISTINCT FROM 'object' OR bad_field.name IS NOT NULL
   ORDER BY o.ord
   LIMIT 1;
  IF FOUND THEN
    IF v_bad.elem_type IS DISTINCT FROM 'object' THEN
      RAISE EXCEPTION 'enqueue_payment_outbox_batch: element % of p_items is a JSON %, not an item object', v_bad.ord, v_bad.elem_type
        USING ERRCODE = '22023';
    END IF;
    RAISE EXCEPTION 'enqueue_payment_outbox_batch: element %: % must be a JSON string; nothing of this batch was enqueued', v_bad.ord, v_bad.field
      USING ERRCODE = '22023';
  END IF;

  SELECT l.* INTO v_limits FROM public.outbox_limits l;
  SELECT o.ord, pr.code, pr.message INTO v_bad
    FROM jsonb_array_elements(p_items) WITH ORDINALITY AS o(elem, ord)
   CROSS JOIN LATERAL public.outbox_item_input_problem(
     o.elem ->> 'instruction_id', o.elem ->> 'participant_id', o.elem ->> 'idempotency_key',
     o.elem ->> 'rail_type', o.elem -> 'payload', o.elem ->> 'traceparent',
     v_limits.max_payload_bytes, v_limits.max_payload_depth) pr
   ORDER BY o.ord
   LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'enqueue_payment_outbox_batch: element %: %; nothing of this batch was enqueued', v_bad.ord, v_bad.message
      USING ERRCODE = v_bad.code;
  END IF;

  -- Within the batch: a key is one payment too.
  SELECT b.ord, b.first_ord, b.code INTO v_bad
    FROM (
      SELECT o.ord,
             first_value(o.ord) OVER w AS first_ord,
             CASE WHEN (o.elem ->> 'instruction_id') <> first_value(o.elem ->> 'instruction_id') OVER w THEN 'P7401'
                  WHEN (o.elem ->> 'participant_id') <> first_value(o.elem ->> 'participant_id') OVER w
                    OR (o.elem ->> 'rail_type') <> first_value(o.elem ->> 'rail_type') OVER w
                    OR (o.elem -> 'payload') <> first_value(o.elem -> 'payload') OVER w THEN 'P7402'
             END AS code
        FROM jsonb_array_elements(p_items) WITH ORDINALITY AS o(elem, ord)
      WINDOW w AS (PARTITION BY o.elem ->> 'idempotency_key' ORDER BY o.ord)
    ) b
   WHERE b.code IS NOT NULL
   ORDER BY b.ord
   LIMIT 1;
  IF FOUND THEN
    IF v_bad.code = 'P7401' THEN
      RAISE EXCEPTION 'enqueue_payment_outbox_batch: element % uses the idempotency key of element % for a different instruction; one key is one payment; nothing of this batch was enqueued',
        v_bad.ord, v_bad.first_ord
        USING ERRCODE = 'P7401';
    END IF;
    RAISE EXCEPTION 'enqueue_payment_outbox_batch: element % repeats the instruction and idempotency key of element % with different content; nothing of this batch was enqueued',
      v_bad.ord, v_bad.first_ord
      USING ERRCODE = 'P7402';
  END IF;

  -- Keys locked in one global order: two batches can never deadlock each other.
  FOR v_lock_key IN
    SELECT DISTINCT public.outbox_key_lock_id(o.elem ->> 'idempotency_key') AS k
      FROM jsonb_array_elements(p_items) AS o(elem)
     ORDER BY k
  LOOP
    PERFORM public.schema_xact_lock('idempotency key', v_lock_key);
  END LOOP;

  -- Against stored items (a statement after the locks: it sees what earlier holders committed).
  SELECT o.ord, pr.code, pr.message INTO v_bad
    FROM jsonb_array_elements(p_items) WITH ORDINALITY AS o(elem, ord)
   CROSS JOIN LATERAL public.outbox_item_for_key(o.elem ->> 'idempotency_key', o.elem ->> 'instruction_id') x
   CROSS JOIN LATERAL public.outbox_replay_problem(x, o.elem ->> 'instruction_id', o.elem ->> 'participant_id',
                                                   o.elem ->> 'rail_type', o.elem -> 'payload') pr
   ORDER BY o.ord
   LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'enqueue_payment_outbox_batch: element %: %; nothing of this batch was enqueued', v_bad.ord, v_bad.message
      USING ERRCODE = v_bad.code;
  END IF;

  WITH keyed AS (
    -- The first occurrence of each key speaks for the item.
    SELECT DISTINCT ON (o.elem ->> 'idempotency_key')
           o.ord,
           o.elem ->> 'instruction_id'  AS instruction_id,
           o.elem ->> 'participant_id'  AS participant_id,
           o.elem ->> 'idempotency_key' AS idempotency_key,
           o.elem ->> 'rail_type'       AS rail_type,
           o.elem -> 'payload'          AS payload,
           o.elem ->> 'traceparent'     AS traceparent
      FROM jsonb_array_elements(p_items) WITH ORDINALITY AS o(elem, ord)
     ORDER BY o.elem ->> 'idempotency_key', o.ord
  ),
  fresh AS (
    SELECT k.*,
           row_number() OVER (PARTITION BY k.participant_id ORDER BY k.ord) AS nth,
           count(*) OVER (PARTITION BY k.participant_id) AS participant_new
      FROM keyed k
     WHERE NOT EXISTS (
       SELECT 1 FROM public.payment_outbox_items i WHERE i.idempotency_key = k.idempotency_key
     )
  ),
  allocated AS (
    -- One bump per participant by its number of new items, in participant order (the
    -- counter rows are locked in one global order); this batch owns [next - n, next - 1].
    INSERT INTO public.participant_outbox_sequences AS s (participant_id, next_sequence_id)
    SELECT f.participant_id, max(f.participant_new) + 1
      FROM fresh f
     GROUP BY f.participant_id
     ORDER BY f.participant_id
    ON CONFLICT (participant_id) DO UPDATE
      SET next_sequence_id = s.next_sequence_id + (excluded.next_sequence_id - 1),
          updated_at = now()
    RETURNING s.participant_id, s.next_sequence_id AS next_after
  ),
  inserted AS (
    INSERT INTO public.payment_outbox_items AS i (
      outbox_id, instruction_id, participant_id, sequence_id, idempotency_key, rail_type,
      payload, payload_sha256, traceparent
    )
    SELECT uuidv7(), f.instruction_id, f.participant_id,
           a.next_after - f.participant_new + f.nth - 1,
           f.idempotency_key, f.rail_type, f.payload,
           encode(sha256(convert_to(f.payload::text, 'UTF8')), 'hex'), f.traceparent
      FROM fresh f
      JOIN allocated a ON a.participant_id = f.participant_id
     ORDER BY f.ord
    RETURNING i.outbox_id
  )
  SELECT COALESCE(array_agg(n.outbox_id), '{}') INTO v_new FROM inserted n;

  INSERT INTO public.payment_outbox_pending (outbox_id, participant_id, sequence_id, rail_type, created_at)
  SELECT i.outbox_id, i.participant_id, i.sequence_id, i.rail_type, i.created_at
    FROM public.payment_outbox_items i
   WHERE i.outbox_id = ANY (v_new)
   ORDER BY i.outbox_id;

  RETURN QUERY
  SELECT x.outbox_id, x.sequence_id, x.created_at, public.outbox_item_state(x.outbox_id)
    FROM jsonb_array_elements(p_items) WITH ORDINALITY AS o(elem, ord)
   CROSS JOIN LATERAL public.outbox_item_for_key(o.elem ->> 'idempotency_key', o.elem ->> 'instruction_id') x
   ORDER BY o.ord;
END;
$$;

-- ------------------------------------------------------------
-- Privileges: the helpers are internal (CREATE OR REPLACE kept the enqueue grants)
-- ------------------------------------------------------------
REVOKE ALL ON FUNCTION
  public.schema_lock_wait_bound(),
  public.schema_lock_timeout(),
  public.schema_xact_lock(text, int, int),
  public.schema_xact_lock(text, bigint)
  FROM PUBLIC;
